"""`iau`, the operator's command line (cli.main), over flows/ and stores/."""
