# Prints the environment terraform runs in, so tests can check what reaches a run (and what must not).
resource "null_resource" "env" {
  provisioner "local-exec" {
    command = "echo ENV-DUMP-BEGIN; env | sort; echo ENV-DUMP-END"
  }
}

output "done" {
  value = "yes"
}
