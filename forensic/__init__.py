"""mssql-forensic: offline forensic timeline for SQL Server persistence."""

__version__ = "0.1.0"
