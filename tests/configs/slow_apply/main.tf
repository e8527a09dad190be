# Applies slowly (the plan is fast): a local-exec that ticks once a second, for fault tests that need
# an apply to be running when something goes wrong.
variable "seconds" {
  type    = number
  default = 30
}

variable "marker" {
  type    = string
  default = "a"
}

resource "null_resource" "slow" {
  triggers = {
    marker = var.marker
  }

  provisioner "local-exec" {
    command = "for i in $(seq 1 ${var.seconds}); do echo tick $i; sleep 1; done"
  }
}

output "marker" {
  value = var.marker
}
