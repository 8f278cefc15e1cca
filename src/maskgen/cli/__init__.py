"""The ``maskgen`` command line: ``main`` builds the argparse tree from one module per group."""
