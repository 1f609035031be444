"""Pure code: cluster file -> model -> rendered text and plans. No I/O but reading the file."""
