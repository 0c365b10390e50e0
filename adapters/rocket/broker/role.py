"""The broker's role in its group: what a slave refuses, promotion, and the saved role.

A slave refuses writes as RocketMQ's does: SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE
and CONSUMER_SEND_MSG_BACK answer SERVICE_NOT_AVAILABLE (its store is read-only: "the broker
role is slave"), END_TRANSACTION answers SLAVE_NOT_AVAILABLE (EndTransactionProcessor).

``PROMOTE_SLAVE`` (our request code; ``logstore admin promoteSlave -b ADDR``) makes a slave its
group's master: the new role is set first (so no late name server answer makes it follow again),
then it stops syncing metadata, stops following, bumps the leader epoch and serves the logs
(``ha.py``), reloads the scheduler's progress it copied from the old master, indexes the keys
of the messages it copied, rebuilds the transaction state from its half/op queues, starts the
master-only services and registers with brokerId 0, which replaces its slave entry in every
route. The new role is saved in
``config/brokerRole.json`` together with the broker.conf role it overrode: a restart keeps it
master while broker.conf still says what it said then; once broker.conf says something else,
the file is removed and broker.conf rules again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode

from .config import ASYNC_MASTER, MASTER_ID, SYNC_MASTER, BrokerConfig
from .persist import JsonFile

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

ROLE_FILE = "brokerRole.json"
SLAVE_REFUSES_WRITE = "the broker role is slave: it does not accept messages; send to the master of its group"

Handler = Callable[[Connection, RemotingCommand], Awaitable[RemotingCommand | None]]


def apply_saved_role(config: BrokerConfig, file: JsonFile) -> None:
    """A role ``promoteSlave`` saved wins over broker.conf while broker.conf is unchanged."""
    doc = file.load()
    if not doc:
        return
    if (doc.get("confBrokerRole"), doc.get("confBrokerId")) != (config.broker_role, config.broker_id):
        # The operator has set the role since: theirs wins, now and on every later start.
        log.warning("broker.conf changed since this broker was promoted: %s removed", file.path)
        file.io.unlink(file.path)
        file.io.fsync_dir(file.directory)
        return
    config.broker_role, config.broker_id = str(doc["brokerRole"]), int(doc["brokerId"])
    config.validate()
    log.warning("brokerRole %s, brokerId %d from %s (this broker was promoted; broker.conf says %s, %d)",
                config.broker_role, config.broker_id, file.path, doc["confBrokerRole"], doc["confBrokerId"])


def refuse_on_slave(broker: Broker, fn: Handler, code: int) -> Handler:
    async def handler(conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        if broker.config.is_slave:
            return cmd.make_response(code, SLAVE_REFUSES_WRITE)
        return await fn(conn, cmd)

    return handler


class RoleProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.file = JsonFile(broker.store.io, broker.store.root, ROLE_FILE)
        current = (broker.config.broker_role, broker.config.broker_id)
        saved = self.file.load()
        # The role broker.conf gives (apply_saved_role may have overridden it already).
        self.conf_role = ((str(saved["confBrokerRole"]), int(saved["confBrokerId"]))
                          if saved and (saved.get("brokerRole"), saved.get("brokerId")) == current else current)
        self.promoted_ms = 0
        self.epoch: int | None = None

    async def promote_slave(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        role = cmd.ext_fields.get("brokerRole") or ASYNC_MASTER
        if role not in (ASYNC_MASTER, SYNC_MASTER):
            return cmd.make_response(ResponseCode.INVALID_PARAMETER, f"brokerRole must be {ASYNC_MASTER} or {SYNC_MASTER}")
        if not self.broker.config.is_slave:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR,
                                     f"{self.broker.config.broker_addr} is already a master ({self.broker.config.broker_role})")
        force = (cmd.ext_fields.get("force") or "false").lower() == "true"
        if not self.broker.store.may_lead and not force:
            # Checked before anything changes: the broker stays a slave that can still catch up.
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, (
                f"{self.broker.config.broker_addr} may not lead: its recovery cut data and it has not caught up "
                "with a master since; promote a slave that has, or force it (acknowledged messages may be lost)"))
        try:
            await self.promote(role, force=force)
        except Exception as exc:
            log.exception("promotion failed")
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"promotion failed: {exc}")
        return cmd.make_response(ResponseCode.SUCCESS, ext_fields={
            "brokerRole": role, "brokerId": MASTER_ID, "epoch": "" if self.epoch is None else self.epoch})

    async def promote(self, role: str, *, force: bool = False) -> None:
        broker = self.broker
        cfg = broker.config
        log.warning("promoting %s (%s, id %d) to %s of %s%s", cfg.broker_addr, cfg.broker_role, cfg.broker_id,
                    role, cfg.broker_name, "" if broker.store.may_lead else
                    " (forced: its recovery cut data and it has not caught up since)")
        cfg.broker_role, cfg.broker_id = role, MASTER_ID
        await broker.store.run_blocking(lambda: self.file.save({
            "brokerRole": role, "brokerId": MASTER_ID, "confBrokerRole": self.conf_role[0],
            "confBrokerId": self.conf_role[1], "promotedAtMs": int(time.time() * 1000)}))
        await broker.slave_sync.close()
        self.epoch = await broker.ha.promote(force=force)
        broker.schedule.reload_progress()
        indexed = broker.key_index.catch_up((t, lg, lid) for t, _q, lg, lid in broker.queues.all_queues())
        if indexed:
            log.info("indexed the keys of %d replicated messages", indexed)
        await broker.transactions.open()
        broker.start_master_services()
        broker.register_handlers()  # without the slave's refusals
        self.promoted_ms = int(time.time() * 1000)
        await broker.registrar.register_all()
        log.warning("%s is now the master of %s (leader epoch %s)", cfg.broker_addr, cfg.broker_name, self.epoch)

    def status(self) -> dict[str, str]:
        b = self.broker
        cfg = b.config
        doc = {"brokerName": cfg.broker_name, "brokerRole": cfg.broker_role, "brokerId": str(cfg.broker_id),
               "brokerAddr": cfg.broker_addr, "slaveReadEnable": str(cfg.slave_read_enable).lower(),
               **b.ha.status()}
        if cfg.is_slave:
            doc.update(b.slave_sync.status())
        if self.promoted_ms:
            doc["promotedTimestamp"] = str(self.promoted_ms)
        return doc
