"""``python -m forensic`` is the ``mssql-forensic`` command."""

from forensic.cli import main

if __name__ == "__main__":
    main()
