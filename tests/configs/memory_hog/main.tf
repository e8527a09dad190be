# Uses far more memory than a run may: tail keeps the whole (newline-free) input line.
resource "null_resource" "hog" {
  provisioner "local-exec" {
    command = "head -c 3000M /dev/zero | tail -n 1 | wc -c"
  }
}
