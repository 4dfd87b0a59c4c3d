"""`python -m pikube` runs the command line."""

from pikube.cli import main

if __name__ == "__main__":
    main()
