# An apply that runs long enough to be canceled, or to have its agent killed under it.
resource "null_resource" "sleeper" {
  provisioner "local-exec" {
    command = "echo SLEEPER-STARTED; sleep 120; echo SLEEPER-DONE"
  }
}
