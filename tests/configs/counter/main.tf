variable "n" {
  type    = number
  default = 3
}

variable "label" {
  type    = string
  default = "counter"
}

resource "null_resource" "item" {
  count = var.n
  triggers = {
    label = "${var.label}-${count.index}"
  }
}

output "labels" {
  value = [for r in null_resource.item : r.triggers.label]
}

output "secret" {
  value     = "${var.label}-hidden"
  sensitive = true
}
