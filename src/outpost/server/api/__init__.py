"""The public API under /api/v2, in Terraform Cloud's shapes: one module per resource."""
