/*
    collect_master.sql - mssql-forensic live collection of master-database metadata.

    READ-ONLY: only SELECT statements against catalog views; no object is
    created, no option is changed, nothing is written on the server.
    SQL Server 2008 or later (views that a version lacks are skipped).
    Needs VIEW SERVER STATE / VIEW ANY DEFINITION (sysadmin sees everything;
    a lesser login sees fewer rows and NULL definitions).

    Output: a sequence of XML elements that mssql-forensic's master_export
    parser reads with no guessing (docs/master_export.md):

        <mssqlf_collect version="1" machine_name=".." instance_name=".."
                        server_name=".." product_version=".." collected_local=".."
                        collected_utc=".." utc_offset_minutes=".."/>
        <result view="sys.procedures" database="master"><row>...</row>...</result>
        ...
        <mssqlf_end/>

    Rows are FOR XML PATH('row'), ELEMENTS XSINIL (NULL = xsi:nil), binary
    as base64, datetimes as ISO 8601 local server time.

    Run with the PowerShell wrapper Collect-MssqlMaster.ps1 (recommended), or:
        sqlcmd -S SERVER\INSTANCE -E -i collect_master.sql -o master_collect.xml -y 0 -h -1 -f o:65001
    (-y 0: no 256-character cut; -h -1: no headers; -f o:65001: UTF-8 output).
    In SSMS: Query > SQLCMD Mode, Results to File, with "Maximum characters
    retrieved / XML data" set to unlimited.
*/
:XML ON
SET NOCOUNT ON;
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;

-- The marker: which server, and its UTC offset at collection time (the
-- times in every row below are this server's local time).
SELECT N'1' AS [@version],
       CAST(SERVERPROPERTY('MachineName') AS nvarchar(128)) AS [@machine_name],
       ISNULL(CAST(SERVERPROPERTY('InstanceName') AS nvarchar(128)), N'MSSQLSERVER') AS [@instance_name],
       @@SERVERNAME AS [@server_name],
       CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS [@product_version],
       CONVERT(nvarchar(33), SYSDATETIME(), 126) AS [@collected_local],
       CONVERT(nvarchar(33), SYSUTCDATETIME(), 126) AS [@collected_utc],
       DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) AS [@utc_offset_minutes]
FOR XML PATH('mssqlf_collect');

SELECT N'sys.configurations' AS [@view], N'master' AS [@database],
       (SELECT c.configuration_id, c.name, CONVERT(int, c.value) AS value, CONVERT(int, c.minimum) AS minimum,
               CONVERT(int, c.maximum) AS maximum, CONVERT(int, c.value_in_use) AS value_in_use,
               c.description, c.is_dynamic, c.is_advanced
        FROM master.sys.configurations AS c
        ORDER BY c.name
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.procedures' AS [@view], N'master' AS [@database],
       (SELECT p.name, SCHEMA_NAME(p.schema_id) AS schema_name, p.object_id, p.type, p.type_desc,
               p.create_date, p.modify_date, p.is_ms_shipped, p.is_auto_executed,
               OBJECTPROPERTY(p.object_id, 'ExecIsStartup') AS exec_is_startup,
               m.definition
        FROM master.sys.procedures AS p
        LEFT JOIN master.sys.sql_modules AS m ON m.object_id = p.object_id
        ORDER BY p.object_id
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.extended_procedures' AS [@view], N'master' AS [@database],
       (SELECT x.name, SCHEMA_NAME(x.schema_id) AS schema_name, x.object_id, x.type, x.type_desc,
               x.create_date, x.modify_date, x.is_ms_shipped, x.dll_name
        FROM master.sys.extended_procedures AS x
        ORDER BY x.object_id
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.server_triggers' AS [@view], N'master' AS [@database],
       (SELECT t.name, t.object_id, t.parent_class_desc, t.type, t.type_desc, t.create_date, t.modify_date,
               t.is_ms_shipped, t.is_disabled,
               STUFF((SELECT N',' + e.type_desc FROM master.sys.server_trigger_events AS e
                      WHERE e.object_id = t.object_id FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'),
                     1, 1, N'') AS ddl_trigger_events,
               m.definition
        FROM master.sys.server_triggers AS t
        LEFT JOIN master.sys.server_sql_modules AS m ON m.object_id = t.object_id
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.server_principals' AS [@view], N'master' AS [@database],
       (SELECT sp.name, sp.principal_id, sp.sid, sp.type, sp.type_desc, sp.is_disabled, sp.create_date,
               sp.modify_date, sp.default_database_name,
               CASE WHEN EXISTS (SELECT 1 FROM master.sys.server_role_members AS rm
                                 JOIN master.sys.server_principals AS r ON r.principal_id = rm.role_principal_id
                                 WHERE rm.member_principal_id = sp.principal_id AND r.name = N'sysadmin')
                    THEN 1 ELSE 0 END AS is_sysadmin
        FROM master.sys.server_principals AS sp
        ORDER BY sp.principal_id
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.server_role_members' AS [@view], N'master' AS [@database],
       (SELECT r.name AS role_name, m.name AS member_name, m.type AS member_type,
               rm.role_principal_id, rm.member_principal_id
        FROM master.sys.server_role_members AS rm
        JOIN master.sys.server_principals AS r ON r.principal_id = rm.role_principal_id
        JOIN master.sys.server_principals AS m ON m.principal_id = rm.member_principal_id
        ORDER BY r.name, m.name
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

SELECT N'sys.databases' AS [@view], N'master' AS [@database],
       (SELECT d.name, d.database_id, SUSER_SNAME(d.owner_sid) AS owner, d.owner_sid, d.create_date,
               d.is_trustworthy_on, d.is_db_chaining_on, d.state_desc, d.compatibility_level
        FROM master.sys.databases AS d
        ORDER BY d.database_id
        FOR XML PATH('row'), TYPE, ELEMENTS XSINIL)
FOR XML PATH('result');

-- sys.trusted_assemblies exists from SQL Server 2017 on.
IF EXISTS (SELECT 1 FROM master.sys.all_objects WHERE name = N'trusted_assemblies' AND schema_id = SCHEMA_ID(N'sys'))
    EXEC (N'SELECT N''sys.trusted_assemblies'' AS [@view], N''master'' AS [@database],
       (SELECT ta.hash, ta.description, ta.create_date, ta.created_by
        FROM master.sys.trusted_assemblies AS ta
        FOR XML PATH(''row''), TYPE, ELEMENTS XSINIL)
FOR XML PATH(''result'');');

-- Assemblies live in every database (TRUSTWORTHY user databases are where
-- CLR backdoors usually sit): one result per online database.
DECLARE @db sysname, @exec nvarchar(400);
DECLARE @assemblies nvarchar(max) = N'SELECT N''sys.assembly_files'' AS [@view], DB_NAME() AS [@database],
       (SELECT af.assembly_id, a.name AS assembly_name, af.name AS file_name, af.file_id, a.clr_name,
               a.permission_set_desc, a.is_visible, a.is_user_defined, USER_NAME(a.principal_id) AS owner,
               a.create_date, a.modify_date, DATALENGTH(af.content) AS content_length,
               -- Over 7 MB the base64 text would pass libxml2''s 10 MB
               -- limit for one value: leave it out (the length says so).
               CASE WHEN DATALENGTH(af.content) <= 7000000 THEN af.content END AS content
        FROM sys.assembly_files AS af
        JOIN sys.assemblies AS a ON a.assembly_id = af.assembly_id
        ORDER BY af.assembly_id, af.file_id
        FOR XML PATH(''row''), TYPE, ELEMENTS XSINIL)
FOR XML PATH(''result'');';
DECLARE @modules nvarchar(max) = N'SELECT N''sys.assembly_modules'' AS [@view], DB_NAME() AS [@database],
       (SELECT am.object_id, o.name, SCHEMA_NAME(o.schema_id) AS schema_name, o.type, o.type_desc,
               o.create_date, o.modify_date, o.is_ms_shipped, am.assembly_id, a.name AS assembly_name,
               am.assembly_class, am.assembly_method
        FROM sys.assembly_modules AS am
        JOIN sys.objects AS o ON o.object_id = am.object_id
        JOIN sys.assemblies AS a ON a.assembly_id = am.assembly_id
        FOR XML PATH(''row''), TYPE, ELEMENTS XSINIL)
FOR XML PATH(''result'');';
DECLARE dbs CURSOR LOCAL FAST_FORWARD FOR
    SELECT name FROM master.sys.databases WHERE state = 0 AND HAS_DBACCESS(name) = 1 ORDER BY database_id;
OPEN dbs;
FETCH NEXT FROM dbs INTO @db;
WHILE @@FETCH_STATUS = 0
BEGIN
    -- <db>.sys.sp_executesql runs the statement in that database.
    SET @exec = QUOTENAME(@db) + N'.sys.sp_executesql';
    EXEC @exec @assemblies;
    EXEC @exec @modules;
    FETCH NEXT FROM dbs INTO @db;
END;
CLOSE dbs;
DEALLOCATE dbs;

-- End marker: a file without it was cut.
SELECT CONVERT(nvarchar(33), SYSDATETIME(), 126) AS [@collected_local_end] FOR XML PATH('mssqlf_end');
