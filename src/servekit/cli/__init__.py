"""The `servekit` command line: thin commands that parse options, call the library and print."""
