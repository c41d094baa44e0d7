"""The GMP record: journal, audit trail, signatures, historian, and the store that keeps them."""
