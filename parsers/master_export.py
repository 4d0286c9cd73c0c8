"""Master-database metadata exports: catalog query results in any shape.

Responders bring the results of queries against ``master`` (startup
procedures, assemblies, configuration, sysadmin members, ...) as CSV, sqlcmd
text, bcp output, PowerShell Export-Csv/Export-Clixml, FOR JSON/FOR XML or
dbatools scripts.  :mod:`parsers.export_shapes` reads the shape,
:mod:`parsers.catalog_views` recognises the view from the columns and turns
rows into events, :mod:`parsers.clr_binary` handles assembly bytes and
:mod:`parsers.export_scripts` dbatools' ``.sql`` files.

Recognition is by content only; the registry asks this parser after the
trace, EVTX, ERRORLOG and agent-log parsers, and ``sniff`` still refuses
ERRORLOG-looking text and anything without catalog column names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import datetime
from typing import Any

from forensic.model import TZ_COLLECTION, Event, InputEvidence, ParseWarning, TimeAnchor
from parsers import catalog_views, export_scripts, export_shapes
from parsers.base import SNIFF_BYTES, Source
from parsers.export_shapes import Row, Shape


def _read_head(src: Source, size: int = SNIFF_BYTES) -> bytes:
    with src.open() as stream:
        return stream.read(size)


def _rows(src: Source, head: bytes, shape: Shape) -> Iterator[Row | ParseWarning]:
    stream = src.open()
    text = export_shapes.open_text(stream, head)
    try:
        if shape.kind in ("delimited", "headerless"):
            yield from export_shapes.read_delimited(text, shape, catalog_views.free_text_column,
                                                     catalog_views.row_start)
        elif shape.kind == "sqlcmd":
            yield from export_shapes.read_sqlcmd(text, catalog_views.free_text_column)
        elif shape.kind == "json":
            yield from export_shapes.read_json(text)
        elif shape.kind == "xml":
            yield from export_shapes.read_xml(text)
        elif shape.kind == "clixml":
            yield from export_shapes.read_clixml(text)
        elif shape.kind == "dbatools":
            yield from export_scripts.read_dbatools(text)
    finally:
        text.close()


def _collection_anchor(context: Mapping[str, Any], path: str) -> TimeAnchor | None:
    """The server's offset when the collection script ran: time-zone evidence
    for the instance's local-time artifacts, like the ERRORLOG banner."""
    try:
        offset = int(str(context["utc_offset_minutes"]).strip())
        local = datetime.fromisoformat(str(context["collected_local"]).strip()[:26])
    except (KeyError, ValueError, TypeError):
        return None
    if abs(offset) > 14 * 60:
        return None
    return TimeAnchor(local.replace(tzinfo=None), offset, TZ_COLLECTION, path)


class MasterExportParser:
    name = "master_export"
    artifact_type = "master_export"

    def sniff(self, head: bytes, name: str) -> bool:
        try:
            return export_shapes.detect_shape(export_shapes.head_text(head)) is not None
        except Exception:  # noqa: BLE001 - sniff must never raise
            return False

    def prescan(self, src: Source) -> InputEvidence:
        """Host/instance from the first row (or the collection marker)."""
        evidence = InputEvidence()
        try:
            head = _read_head(src)
            shape = export_shapes.detect_shape(export_shapes.head_text(head))
            if shape is None:
                return evidence
            evidence.facts["export_shape"] = shape.kind
            with closing(_rows(src, head, shape)) as rows:
                first = next((item for item in rows if isinstance(item, Row)), None)
            if first is not None:
                item = first
                host, instance = catalog_views.host_instance(item.values)
                if not (host or instance):
                    host, instance = catalog_views.host_instance(item.context)
                evidence.host, evidence.instance = host, instance
                for key in ("utc_offset_minutes", "collected_local", "collected_utc", "product_version"):
                    if key in item.context:
                        evidence.facts[f"collection_{key}"] = item.context[key]
                anchor = _collection_anchor(item.context, src.display_path)
                if anchor is not None:
                    evidence.anchors.append(anchor)
        except Exception:  # noqa: BLE001 - a prescan problem is reported by parse
            pass
        return evidence

    def parse(self, src: Source, options: Mapping[str, Any] | None = None) -> Iterator[Event | ParseWarning]:
        options = options or {}
        head = _read_head(src)
        shape = export_shapes.detect_shape(export_shapes.head_text(head))
        if shape is None:
            yield ParseWarning("not a master-database export this parser recognises", "offset 0x0", damaged=True)
            return
        state = catalog_views.FileState(extract_dir=options.get("extract_assemblies") or None)
        try:
            yield from self._parse_rows(src, head, shape, state)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not become a traceback for the user
            yield ParseWarning(f"master_export stopped on an internal error ({type(exc).__name__}: {exc}); "
                               "rows after this point were not read", f"after {state.last_position}",
                               damaged=True)

    def _parse_rows(self, src: Source, head: bytes, shape: Shape,
                    state: catalog_views.FileState) -> Iterator[Event | ParseWarning]:
        views: dict[tuple[frozenset[str], str | None], str | None] = {}
        skipped: dict[int, int] = {}
        first_skipped: dict[int, tuple[str, list[str]]] = {}
        for item in _rows(src, head, shape):
            if isinstance(item, ParseWarning):
                yield item
                continue
            state.last_position = item.position
            key = (frozenset(item.values), item.hint)
            if key not in views:
                rec, _ = catalog_views.canonical(item.values)
                views[key] = catalog_views.recognise(set(rec), item.hint)
            view = views[key]
            if view is None:
                skipped[item.table] = skipped.get(item.table, 0) + 1
                first_skipped.setdefault(item.table, (item.position, list(item.values)[:12]))
                continue
            state.views[view] = state.views.get(view, 0) + 1
            extra = {"export_shape": shape.kind}
            if item.table:
                extra["result_set"] = item.table
            yield from catalog_views.row_events(view, item.values, state, record=item.number,
                                                position=item.position, context=item.context,
                                                extra_attributes=extra)
        yield from catalog_views.consistency_events(state)
        for table, count in skipped.items():
            position, columns = first_skipped[table]
            yield ParseWarning(f"{count} row(s) whose columns match no catalog view were skipped "
                               f"(columns: {', '.join(map(str, columns))})", position, lost_records=count,
                               damaged=False)


PARSER = MasterExportParser()
