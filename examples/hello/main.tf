# A small configuration that plans and applies for real, offline: the null provider comes from the
# provider mirror laid out by `outpost tools install`.
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "greeting" {
  type    = string
  default = "Hello from an Outpost agent"
}

resource "null_resource" "hello" {
  triggers = {
    greeting = var.greeting
  }

  provisioner "local-exec" {
    command = "echo \"$GREETING\" && uname -sr"
    environment = {
      GREETING = var.greeting
    }
  }
}

output "greeting" {
  value = var.greeting
}

output "resource_id" {
  value = null_resource.hello.id
}
