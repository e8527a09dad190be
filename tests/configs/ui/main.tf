# For the browser tests: an apply that prints a line a second (so the log visibly streams), a plain
# output and a sensitive one fed by a sensitive workspace variable.
variable "ticks" {
  type    = number
  default = 3
}

variable "word" {
  type      = string
  default   = "none"
  sensitive = true
}

resource "null_resource" "ticker" {
  triggers = {
    ticks = var.ticks
  }

  provisioner "local-exec" {
    command = "for i in $(seq 1 ${var.ticks}); do echo tick $i; sleep 1; done"
  }
}

output "ticks" {
  value = var.ticks
}

output "word" {
  value     = var.word
  sensitive = true
}
