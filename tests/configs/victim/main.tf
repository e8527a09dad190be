# A run that keeps its apply going (and its files and state on disk) until the test releases it, so that
# another run can try to reach them meanwhile.
resource "null_resource" "victim" {
  provisioner "local-exec" {
    command = "echo VICTIM-RUNNING; i=0; while [ ! -e release ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done; echo VICTIM-DONE"
  }
}
