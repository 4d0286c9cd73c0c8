<#
.SYNOPSIS
    Collects master-database metadata from a live SQL Server for mssql-forensic (read-only).

.DESCRIPTION
    Runs collect_master.sql (next to this script) against one instance and
    writes its result, unchanged, to
        <OutputDirectory>\mssqlf_master_<server>_<yyyyMMddTHHmmssZ>.xml
    plus a .sha256 file beside it.  The script only SELECTs from catalog
    views; nothing on the server is changed.  The output is the shape that
    mssql-forensic's master_export parser reads with no guessing: a
    <mssqlf_collect .../> marker, one <result view="..."> element per
    catalog view (per database for assemblies) and a closing <mssqlf_end/>.

    Uses System.Data.SqlClient only: no module to install, works in Windows
    PowerShell 5.1 and PowerShell 7.

.PARAMETER SqlInstance
    Server or Server\Instance (or Server,Port).

.PARAMETER OutputDirectory
    Where to write the output (created if missing).  Default: current directory.

.PARAMETER Credential
    SQL login credential.  Default: Windows integrated authentication.

.EXAMPLE
    .\Collect-MssqlMaster.ps1 -SqlInstance SQL01\PROD -OutputDirectory E:\case42
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $SqlInstance,
    [string] $OutputDirectory = (Get-Location).Path,
    [System.Management.Automation.PSCredential] $Credential,
    [string] $ScriptPath = (Join-Path $PSScriptRoot 'collect_master.sql'),
    [int] $CommandTimeout = 600
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'

$builder = New-Object System.Data.SqlClient.SqlConnectionStringBuilder
$builder['Data Source'] = $SqlInstance
$builder['Initial Catalog'] = 'master'
$builder['Application Name'] = 'mssql-forensic collect_master'
# ReadOnly intent: routed to a readable secondary where one exists; a
# reminder that nothing here writes.
$builder['ApplicationIntent'] = 'ReadOnly'
if ($Credential) {
    $builder['Integrated Security'] = $false
} else {
    $builder['Integrated Security'] = $true
}
$connection = New-Object System.Data.SqlClient.SqlConnection $builder.ConnectionString
if ($Credential) {
    $password = $Credential.GetNetworkCredential().SecurePassword
    $password.MakeReadOnly()
    $connection.Credential = New-Object System.Data.SqlClient.SqlCredential($Credential.UserName, $password)
}

$null = New-Item -ItemType Directory -Force -Path $OutputDirectory
$stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssZ')
$safeName = ($SqlInstance -replace '[\\/:,*?"<>|]', '_')
$outFile = Join-Path $OutputDirectory ("mssqlf_master_{0}_{1}.xml" -f $safeName, $stamp)

# sqlcmd-only lines (":XML ON") are for sqlcmd; batches are split on GO.
$text = [System.IO.File]::ReadAllText($ScriptPath)
$lines = $text -split "`r?`n" | Where-Object { $_ -notmatch '^\s*:' }
$batches = New-Object System.Collections.Generic.List[string]
$current = New-Object System.Text.StringBuilder
foreach ($line in $lines) {
    if ($line -match '^\s*GO\s*$') {
        if ($current.Length) { $batches.Add($current.ToString()) }
        $current = New-Object System.Text.StringBuilder
    } else {
        $null = $current.AppendLine($line)
    }
}
if ($current.ToString().Trim()) { $batches.Add($current.ToString()) }

$utf8 = New-Object System.Text.UTF8Encoding $false
$writer = New-Object System.IO.StreamWriter($outFile, $false, $utf8)
try {
    $connection.Open()
    foreach ($batch in $batches) {
        $command = $connection.CreateCommand()
        $command.CommandText = $batch
        $command.CommandTimeout = $CommandTimeout
        $reader = $command.ExecuteReader()
        try {
            do {
                # A FOR XML result arrives split over rows: join them.
                $any = $false
                while ($reader.Read()) {
                    if (-not $reader.IsDBNull(0)) { $writer.Write($reader.GetString(0)); $any = $true }
                }
                if ($any) { $writer.WriteLine() }
            } while ($reader.NextResult())
        } finally {
            $reader.Dispose()
        }
    }
} finally {
    $writer.Dispose()
    $connection.Dispose()
}

$hash = (Get-FileHash -Algorithm SHA256 -LiteralPath $outFile).Hash.ToLowerInvariant()
[System.IO.File]::WriteAllText("$outFile.sha256", ("{0}  {1}`n" -f $hash, (Split-Path -Leaf $outFile)), $utf8)
Write-Output $outFile
