"""The seed article's transfer transaction, on this project's Python client.

Bob's bank debits his account in a local transaction and tells Smith's bank, through a
transactional message, to credit Smith. The message and the local transaction succeed or fail
together:

1. Bob -> Smith 100: the debit succeeds, the local transaction answers COMMIT_MESSAGE and Smith's
   consumer gets the credit.
2. Bob -> Smith 500: Bob has too little money, the local transaction answers ROLLBACK_MESSAGE and
   the message is never delivered.
3. Alice -> Smith 50: the debit is written but its outcome is not known when the local
   transaction returns (UNKNOW). The broker keeps the half message and later asks the producer
   (CHECK_TRANSACTION_STATE); ``check_local_transaction`` finds the debit and commits.

Run a broker first (``logstore serve``), then::

    python examples/transfer_transaction.py [--namesrv 127.0.0.1:9876]

The third transfer waits for the broker's check-back: transactionTimeOut (6 s) plus up to one
transactionCheckInterval (30 s) with the default broker.conf. Exits 0 when Smith saw exactly
the two committed credits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from adapters.rocket.admin import Admin, TopicSpec
from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    LocalTransactionState,
    Message,
    PushConsumer,
    TransactionListener,
    TransactionProducer,
    new_message,
)
from examples.lines import say

TOPIC = "TopicTransactionTest"  # the seed's names
PRODUCER_GROUP = "transaction_Producer"
CONSUMER_GROUP = "transaction_Consumer"


class Bank:
    """Bob's bank: accounts and a ledger of debits, keyed by transfer id (the local database)."""

    def __init__(self) -> None:
        self.accounts = {"Bob": 100, "Alice": 80}
        self.debits: dict[str, int] = {}
        self.lock = threading.Lock()

    def debit(self, transfer_id: str, account: str, amount: int) -> bool:
        with self.lock:
            if self.accounts[account] < amount:
                return False
            self.accounts[account] -= amount
            self.debits[transfer_id] = amount
            return True


class TransferListener(TransactionListener):
    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def execute_local_transaction(self, msg: Message, arg: Any) -> LocalTransactionState:
        transfer = json.loads(msg.body)
        ok = self.bank.debit(transfer["id"], transfer["from"], transfer["amount"])
        if not ok:
            say(f"local transaction {transfer['id']}: {transfer['from']} cannot pay "
                  f"{transfer['amount']} -> ROLLBACK_MESSAGE")
            return LocalTransactionState.ROLLBACK_MESSAGE
        if arg == "slow":  # the debit is written, but we return before we know it committed
            say(f"local transaction {transfer['id']}: outcome not known yet -> UNKNOW")
            return LocalTransactionState.UNKNOW
        say(f"local transaction {transfer['id']}: debited {transfer['from']} -> COMMIT_MESSAGE")
        return LocalTransactionState.COMMIT_MESSAGE

    def check_local_transaction(self, msg: Message) -> LocalTransactionState:
        transfer = json.loads(msg.body)
        found = transfer["id"] in self.bank.debits
        state = LocalTransactionState.COMMIT_MESSAGE if found else LocalTransactionState.ROLLBACK_MESSAGE
        say(f"broker check-back for {transfer['id']}: debit {'found' if found else 'missing'} -> {state.value}")
        return state


async def ensure_topic(namesrv: str) -> None:
    async with Admin(namesrv) as admin:
        masters = await admin.master_addrs()
        if not masters:
            raise SystemExit(f"no broker is registered with the name server {namesrv}")
        await admin.update_topic(list(masters.values()), TopicSpec(TOPIC, 4, 4))


async def main(namesrv: str, timeout_s: float) -> int:
    await ensure_topic(namesrv)
    config = ClientConfig(namesrv_addr=namesrv, instance_name="transfer-example")
    credits: list[dict[str, Any]] = []
    run = f"{int(time.time() * 1000):x}"  # this run's transfer ids start with it

    async def smith(msgs: list[Message], _ctx: Any) -> ConsumeConcurrentlyStatus:
        for m in msgs:
            transfer = json.loads(m.body)
            if not transfer["id"].startswith(run):
                continue  # an earlier run's
            credits.append(transfer)
            say(f"Smith's bank: credit {transfer['amount']} from {transfer['from']} ({transfer['id']})")
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer(CONSUMER_GROUP, client_config=config,
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(TOPIC, "*")
    consumer.register_message_listener(smith)
    await consumer.start()
    producer = TransactionProducer(PRODUCER_GROUP, client_config=config,
                                   transaction_listener=TransferListener(Bank()))
    await producer.start()
    transfers = [("Bob", 100, None), ("Bob", 500, None), ("Alice", 50, "slow")]
    expected: set[str] = set()
    try:
        for i, (who, amount, arg) in enumerate(transfers, 1):
            transfer_id = f"{run}-{i}"
            transfer = {"id": transfer_id, "from": who, "to": "Smith", "amount": amount}
            msg = new_message(TOPIC, json.dumps(transfer).encode(), tags=f"transaction{i}", keys=f"KEY{i}")
            result = await producer.send_message_in_transaction(msg, arg)
            say(f"transfer {i}: {result.send_status.value}, local transaction "
                  f"{result.local_transaction_state.value}, msgId {result.msg_id}")
            if result.local_transaction_state != LocalTransactionState.ROLLBACK_MESSAGE:
                expected.add(transfer_id)
        say("waiting for the broker's check-back of the UNKNOW transfer ...")
        deadline = time.monotonic() + timeout_s
        while {c["id"] for c in credits} != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # anything else (the rolled-back transfer) would show up now
    finally:
        await producer.shutdown()
        await consumer.shutdown()
    seen = sorted(c["id"] for c in credits)
    ok = seen == sorted(expected)
    say(f"Smith received {len(seen)} credits: {', '.join(seen) or 'none'} -> "
          f"{'OK: only the committed transfers' if ok else 'UNEXPECTED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namesrv", default="127.0.0.1:9876", help="name server address (127.0.0.1:9876)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the credits (90)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.namesrv, args.timeout)))
