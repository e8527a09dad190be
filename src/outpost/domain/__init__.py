"""Pure rules of Outpost: no I/O. State machines are tables; everything else reads them."""
