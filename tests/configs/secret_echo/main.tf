# Shows a sensitive variable's value in the ways a run's log can carry it: in the plan (a trigger), in
# the command terraform prints before running a local-exec, in that command's output through an
# environment variable, and inside long lines (which reach the agent in several reads).
variable "password" {
  type = string
}

resource "null_resource" "leak" {
  triggers = {
    password = var.password
  }
  provisioner "local-exec" {
    command = "echo \"from env: $SECRET_ENV\"; echo 'direct: ${var.password}'; for i in 1 2 3 4 5 6 7 8; do head -c $((40000 + i * 3001)) /dev/zero | tr '\\0' x; echo \"$SECRET_ENV\"; done"
    environment = {
      SECRET_ENV = var.password
    }
  }
}
