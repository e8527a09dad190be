# A hostile configuration: local-exec runs attack.sh, which tries to reach what no run should.
resource "null_resource" "attack" {
  provisioner "local-exec" {
    command = "sh ./attack.sh"
  }
}
