# Says which user a run is, and whether it can see a host file it must not.
resource "null_resource" "whoami" {
  provisioner "local-exec" {
    command = "echo \"RUN-UID=$(id -u)\"; if [ -e /etc/shadow ]; then echo SHADOW-VISIBLE; else echo SHADOW-ABSENT; fi"
  }
}
