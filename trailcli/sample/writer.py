"""Buffer generated rows and write them in large batches once no later cohort can add to them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trailcli.sample import rows
from trailcli.sample.presence import Plan
from trailcli.store import maintenance, tables
from trailcli.store.schema import KINDS

# rows at equal (node, time): an end sorts before a start, a subscribe after its handshake
_TRANSITION_ORDER = pa.array(
    ["offline", "unsubscribe", "heartbeat", "identify", "online", "subscribe"], pa.string()
)

# Written as clean (deduplicated) partitions: their keys are unique by construction and the tables
# are new. Events are not: the generator re-sends some on purpose, as clients do.
CLEAN_KINDS = frozenset(("visits", "presence", "identities"))


class BatchWriter:
    """Appends each kind's rows to its Delta table through the bulk path (no WAL), in batches
    of about `batch_rows` rows.

    Presence rows wait until `close_before(t)` says nothing earlier than `t` can still arrive;
    then they get the nodes' heartbeats and per-node `seq` numbers in time order.
    """

    def __init__(
        self,
        data_dir: Path,
        kinds: tuple[str, ...],
        plan: Plan,
        range_start: int,
        batch_rows: int = 2_000_000,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.kinds = kinds
        self.plan = plan
        self.batch_rows = batch_rows
        self.progress = progress or (lambda _msg: None)
        self.pending: dict[str, list[pa.Table]] = {k: [] for k in kinds}
        self.ready: dict[str, list[pa.Table]] = {k: [] for k in kinds}
        self.written: dict[str, int] = dict.fromkeys(kinds, 0)
        self.next_seq = dict.fromkeys((n.name for n in plan.nodes), 1)
        self.closed_until = range_start

    def add(self, kind: str, table: pa.Table) -> None:
        self.pending[kind].append(table)

    def close_before(self, boundary: int | None) -> None:
        """Rows with time before `boundary` (all rows when None) are final: number and batch them."""
        for kind in self.kinds:
            self._settle(kind, boundary)
            ready = sum(t.num_rows for t in self.ready[kind])
            if ready and (ready >= self.batch_rows or boundary is None):
                self._write(kind)
            elif boundary is None and not self.written[kind]:
                # a requested table exists even when nothing landed in it
                tables.bulk_write(self.data_dir, kind, KINDS[kind].table_schema.empty_table())
        if boundary is not None:
            self.closed_until = boundary

    def _settle(self, kind: str, boundary: int | None) -> None:
        """Move the kind's rows before `boundary` from pending to ready. Only presence rows wait
        for their time to close (they are numbered in time order); the others are ready at once."""
        parts = self.pending[kind]
        if kind != "presence":
            self.ready[kind] += parts
            self.pending[kind] = []
            return
        parts = [*parts, self._heartbeats(boundary)]
        table = pa.concat_tables(parts)
        if boundary is None:
            final, rest = table, table.slice(0, 0)
        else:
            limit = pa.scalar(boundary, pa.int64()).cast(rows.TS)
            early = pc.less(table[KINDS[kind].time_column], limit)
            final, rest = table.filter(early), table.filter(pc.invert(early))
        self.pending[kind] = [rest] if rest.num_rows else []
        if final.num_rows:
            self.ready[kind].append(self._numbered(final) if kind == "presence" else final)

    def _heartbeats(self, boundary: int | None) -> pa.Table:
        hi = boundary if boundary is not None else max(w[1] for n in self.plan.nodes for w in n.up)
        parts = [
            rows.heartbeat_table(node.name, node.beats(self.closed_until, hi))
            for node in self.plan.nodes
        ]
        return pa.concat_tables(parts)

    def _numbered(self, table: pa.Table) -> pa.Table:
        """Number each node's rows on from its last, in (time, transition order) order."""
        node = pc.index_in(table["node_id"], value_set=pa.array(list(self.next_seq))).to_numpy()
        rank = pc.index_in(table["transition"], value_set=_TRANSITION_ORDER).to_numpy()
        time = table["time"].cast(pa.int64()).to_numpy()
        order = np.lexsort((rank, time, node))
        seq = np.empty(len(order), np.int64)
        for code, name in enumerate(list(self.next_seq)):
            mine = order[node[order] == code]
            seq[mine] = self.next_seq[name] + np.arange(len(mine))
            self.next_seq[name] += len(mine)
        return table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seq))

    def _write(self, kind: str) -> None:
        table = pa.concat_tables(self.ready[kind])
        self.ready[kind] = []
        if kind in CLEAN_KINDS:
            maintenance.write_clean(self.data_dir, kind, table)
        else:
            tables.bulk_write(self.data_dir, kind, table)
        self.written[kind] += table.num_rows
        self.progress(f"wrote {table.num_rows:,} {kind} rows ({self.written[kind]:,} in all)")
