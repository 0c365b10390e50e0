"""``logstore admin``: RocketMQ's mqadmin subcommands, names and flags, over the Admin API.

    logstore admin updateTopic      (-b ADDR | -c CLUSTER) -t TOPIC [-r 8] [-w 8] [-p 6] [-o false]
    logstore admin deleteTopic      -c CLUSTER -t TOPIC
    logstore admin topicList        [-c]
    logstore admin topicRoute       -t TOPIC [-l]
    logstore admin topicStatus      -t TOPIC
    logstore admin clusterList      [-c CLUSTER] [-m]
    logstore admin consumerProgress [-g GROUP] [-t TOPIC]
    logstore admin queryMsgById     -i MSGID [-t TOPIC]
    logstore admin queryMsgByKey    -t TOPIC -k KEY [-b BEGIN] [-e END] [-c MAXNUM]
    logstore admin resetOffsetByTime -g GROUP -t TOPIC -s now|MILLIS|yyyy-MM-dd#HH:mm:ss:SSS [-f true]
    logstore admin updateSubGroup   (-b ADDR | -c CLUSTER) -g GROUP [-s true] [-m false] [-d true]
                                    [-o false] [-q 1] [-r 16] [-i 0] [-w 1] [-a true]
    logstore admin dlqList          -g GROUP [-c 64] [-s BEGIN_OFFSET]
    logstore admin resendDlq        -g GROUP (-i MSGID[,MSGID...] | -a [-c 64])
    logstore admin brokerStatus     (-b ADDR | -c CLUSTER)
    logstore admin promoteSlave     -b ADDR [-r ASYNC_MASTER|SYNC_MASTER] [--force]

Every subcommand takes ``-n namesrvAddr`` (``host:port;host:port``; default $NAMESRV_ADDR or
127.0.0.1:9876) and ``--json`` (one JSON document on stdout instead of a table). Flags mqadmin has
that mean nothing here (``-u``, ``-s hasUnitSub``, ``-c cplus``, ...) are accepted and ignored.

Exit status: 0 done, 1 a request failed (the broker's or name server's remark is printed on
stderr), 2 usage error.

``resetOffsetByTime`` asks each broker of the topic for INVOKE_BROKER_TO_RESET_OFFSET (222): the
broker finds each queue's offset at the timestamp (its search-by-timestamp), stores it as the
group's committed offset even when that moves it backwards, and tells the group's online
consumers (RESET_CONSUMER_CLIENT_OFFSET). ``-f false`` only moves offsets backwards.

Dead letters (``%DLQ%<group>``, where a message goes after the group's retryMaxTimes failed
deliveries): ``dlqList`` lists them (offset message id, original topic, reconsume times);
``queryMsgById -i`` shows one in full; ``resendDlq`` sends them (by id, or ``-a`` every listed
one) back to ``%RETRY%<group>`` with reconsumeTimes 0, so only that group consumes them again.

Broker groups: ``brokerStatus`` prints a broker's runtime table (GET_BROKER_RUNTIME_INFO), with
its role, brokerId, the master a slave syncs from and the replication state; ``-c`` does every
broker (masters and slaves) of a cluster. ``promoteSlave`` (ours; RocketMQ 4 has no such
command) makes the slave at ADDR the master of its group: it stops following, bumps the leader
epoch, becomes ASYNC_MASTER (or ``-r SYNC_MASTER``) and re-registers with brokerId 0, so routes
point at it. Stop the old master first, and restart it with brokerRole=SLAVE and a brokerId
above 0: it then follows the new master (and drops whatever the new master never had). A
slave whose recovery cut data (an unclean stop with a torn tail) may not lead until it has
caught up with a master again; ``--force`` promotes it anyway, an unclean election that may
lose acknowledged messages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.rocket.admin import Admin, AdminError, TopicSpec, message_json
from adapters.rocket.admin.dlq import dlq_messages, dlq_topic, resend_dlq
from logstore import runtime
from tools.cli_support import parse_args

PROG = "logstore admin"
DEFAULT_NAMESRV = "127.0.0.1:9876"


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2)."""


# -- output ---------------------------------------------------------------------------------------


def human_time(ms: int) -> str:
    if ms <= 0:
        return "-"
    t = dt.datetime.fromtimestamp(ms / 1000)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f",{ms % 1000:03d}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def emit(args: argparse.Namespace, doc: Any, text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, sort_keys=False))
    else:
        print(text())


# -- argument helpers ---------------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not true|false: {text!r}")


def parse_timestamp(text: str) -> int:
    """mqadmin's forms: ``now``, milliseconds, or ``yyyy-MM-dd#HH:mm:ss:SSS`` (local time)."""
    t = text.strip()
    if t == "now":
        return int(dt.datetime.now().timestamp() * 1000)
    if t.lstrip("-").isdigit():
        return int(t)
    for fmt in ("%Y-%m-%d#%H:%M:%S:%f", "%Y-%m-%d#%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            parsed = dt.datetime.strptime(t, fmt)
        except ValueError:
            continue
        if fmt.endswith(":%f"):  # SSS is milliseconds: strptime read "123" as 123000 us
            ms = t.rsplit(":", 1)[1]
            parsed = parsed.replace(microsecond=int(ms) * 1000)
        return int(parsed.timestamp() * 1000)
    raise argparse.ArgumentTypeError(f"not a timestamp (now|currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS): {text!r}")


async def target_addrs(admin: Admin, args: argparse.Namespace) -> list[str]:
    """-b one broker, or -c every master of a cluster."""
    if args.brokerAddr:
        return [args.brokerAddr]
    if args.clusterName:
        addrs = list((await admin.master_addrs(args.clusterName)).values())
        if not addrs:
            raise AdminError(f"cluster {args.clusterName} has no master broker")
        return addrs
    raise UsageError("one of -b brokerAddr or -c clusterName is required")


# -- subcommands ------------------------------------------------------------------------------------


async def cmd_update_topic(admin: Admin, args: argparse.Namespace) -> None:
    spec = TopicSpec(args.topic, args.readQueueNums, args.writeQueueNums, args.perm, args.order)
    if min(spec.read_queue_nums, spec.write_queue_nums) < 1:
        raise UsageError("-r and -w must be at least 1")
    if spec.perm not in (2, 4, 6):
        raise UsageError("-p must be 2 (W), 4 (R) or 6 (RW)")
    addrs = await admin.update_topic(await target_addrs(admin, args), spec)
    doc = {"topic": spec.topic, "readQueueNums": spec.read_queue_nums, "writeQueueNums": spec.write_queue_nums,
           "perm": spec.perm, "order": spec.order, "brokers": addrs}
    emit(args, doc, lambda: "\n".join(f"create topic to {a} success." for a in addrs)
         + f"\nTopicConfig [topicName={spec.topic}, readQueueNums={spec.read_queue_nums}, "
         f"writeQueueNums={spec.write_queue_nums}, perm={spec.perm}, order={str(spec.order).lower()}]")


async def cmd_delete_topic(admin: Admin, args: argparse.Namespace) -> None:
    addrs = await admin.delete_topic(args.topic, args.clusterName)
    emit(args, {"topic": args.topic, "cluster": args.clusterName, "brokers": addrs},
         lambda: f"delete topic [{args.topic}] from cluster [{args.clusterName}] success.")


async def cmd_topic_list(admin: Admin, args: argparse.Namespace) -> None:
    if args.clusterModel:
        rows = await admin.topic_list_with_clusters()
        emit(args, {"topics": rows}, lambda: table(
            ("#Cluster Name", "#Topic", "#Consumer Group"),
            [(r["cluster"], r["topic"], r["consumerGroup"]) for r in rows]))
        return
    topics = await admin.topic_list()
    emit(args, {"topicList": topics}, lambda: "\n".join(topics))


async def cmd_topic_route(admin: Admin, args: argparse.Namespace) -> None:
    route = await admin.topic_route(args.topic)
    if args.list or not args.json:
        addrs = {b["brokerName"]: b for b in route.get("brokerDatas") or []}
        rows = []
        for q in route.get("queueDatas") or []:
            b = addrs.get(q["brokerName"], {})
            rows.append((b.get("cluster", ""), q["brokerName"], (b.get("brokerAddrs") or {}).get("0", ""),
                         q.get("readQueueNums"), q.get("writeQueueNums"), q.get("perm")))
        if not args.json:
            if args.list:
                print(table(("#ClusterName", "#BrokerName", "#BrokerAddr", "#ReadQueue", "#WriteQueue", "#Perm"),
                            rows))
            else:
                print(json.dumps(route, indent=2, sort_keys=True))
            return
    emit(args, route, lambda: "")


async def cmd_topic_status(admin: Admin, args: argparse.Namespace) -> None:
    rows = await admin.topic_status(args.topic)
    emit(args, {"topic": args.topic, "queues": rows}, lambda: table(
        ("#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"),
        [(r["brokerName"], r["queueId"], r["minOffset"], r["maxOffset"], human_time(r["lastUpdateTimestamp"]))
         for r in rows]))


async def cmd_cluster_list(admin: Admin, args: argparse.Namespace) -> None:
    info = await admin.cluster_info()
    rows = []
    brokers = info.get("brokerAddrTable") or {}
    for cluster, names in sorted((info.get("clusterAddrTable") or {}).items()):
        if args.clusterName and cluster != args.clusterName:
            continue
        for name in sorted(names):
            for bid, addr in sorted(((brokers.get(name) or {}).get("brokerAddrs") or {}).items()):
                rows.append({"cluster": cluster, "brokerName": name, "brokerId": int(bid), "addr": addr})
    if args.clusterName and not rows:
        raise AdminError(f"cluster {args.clusterName} not found")
    emit(args, {"brokers": rows, **({"raw": info} if args.moreStats else {})}, lambda: table(
        ("#Cluster Name", "#Broker Name", "#BID", "#Addr"),
        [(r["cluster"], r["brokerName"], r["brokerId"], r["addr"]) for r in rows]))


async def cmd_consumer_progress(admin: Admin, args: argparse.Namespace) -> None:
    if not args.groupName:
        groups = []
        for g in await admin.consumer_groups():
            p = await admin.consumer_progress(g)
            groups.append({"group": g, "diffTotal": p["diffTotal"], "queues": len(p["queues"])})
        emit(args, {"groups": groups}, lambda: table(
            ("#Group", "#Queues", "#Diff Total"), [(g["group"], g["queues"], g["diffTotal"]) for g in groups]))
        return
    doc = await admin.consumer_progress(args.groupName, args.topic)
    rows = doc["queues"]
    emit(args, doc, lambda: table(
        ("#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff", "#LastTime"),
        [(r["topic"], r["brokerName"], r["queueId"], r["brokerOffset"], r["consumerOffset"], r["diff"],
          human_time(r["lastTimestamp"])) for r in rows])
        + f"\n\nConsume TPS: 0.00\nDiff Total: {doc['diffTotal']}")


def _messages_text(msgs: list[Any]) -> str:
    blocks = []
    for m in msgs:
        j = message_json(m, body_limit=256)
        body = j.get("body", j.get("bodyHex", ""))
        blocks.append("\n".join(f"{k + ':':<20}{v}" for k, v in (
            ("OffsetID", j["msgId"]), ("Topic", j["topic"]), ("Tags", f"[{j['tags'] or ''}]"),
            ("Keys", f"[{' '.join(j['keys'])}]"), ("Queue ID", j["queueId"]), ("Queue Offset", j["queueOffset"]),
            ("CommitLog Offset", j["commitLogOffset"]), ("Reconsume Times", j["reconsumeTimes"]),
            ("Born Timestamp", human_time(j["bornTimestamp"])), ("Store Timestamp", human_time(j["storeTimestamp"])),
            ("Born Host", j["bornHost"]), ("Store Host", j["storeHost"]), ("Properties", j["properties"]),
            ("Body Size", j["bodyBytes"]), ("Body", body))))
    return "\n\n".join(blocks)


async def cmd_query_msg_by_id(admin: Admin, args: argparse.Namespace) -> None:
    msgs = await admin.query_msg_by_id(args.msgId, args.topic)
    emit(args, {"messages": [message_json(m, 4096) for m in msgs]}, lambda: _messages_text(msgs))


async def cmd_query_msg_by_key(admin: Admin, args: argparse.Namespace) -> None:
    msgs = await admin.query_msg_by_key(args.topic, args.msgKey, args.maxNum, args.beginTimestamp,
                                        args.endTimestamp)
    if not msgs and not args.json:
        raise AdminError(f"no message with key {args.msgKey} in topic {args.topic}")
    emit(args, {"messages": [message_json(m, 4096) for m in msgs]}, lambda: table(
        ("#Message ID", "#QID", "#Offset", "#Store Time"),
        [(m.msg_id, m.queue_id, m.queue_offset, human_time(m.store_timestamp)) for m in msgs]))


async def cmd_reset_offset_by_time(admin: Admin, args: argparse.Namespace) -> None:
    rows = await admin.reset_offset_by_time(args.group, args.topic, args.timestamp, args.force)
    doc = {"group": args.group, "topic": args.topic, "timestamp": args.timestamp, "force": args.force,
           "queues": rows}
    emit(args, doc, lambda: f"rollback consumer offset by specified group[{args.group}], topic[{args.topic}], "
         f"force[{str(args.force).lower()}], timestamp(string)[{human_time(args.timestamp)}], "
         f"timestamp(long)[{args.timestamp}]\n" + table(
             ("#brokerName", "#queueId", "#offset"), [(r["brokerName"], r["queueId"], r["offset"]) for r in rows]))


SUB_GROUP_FLAGS = (  # (dest, JSON key)
    ("consumeEnable", "consumeEnable"), ("consumeFromMinEnable", "consumeFromMinEnable"),
    ("consumeBroadcastEnable", "consumeBroadcastEnable"), ("consumeMessageOrderly", "consumeMessageOrderly"),
    ("retryQueueNums", "retryQueueNums"), ("retryMaxTimes", "retryMaxTimes"), ("brokerId", "brokerId"),
    ("whichBrokerWhenConsumeSlowly", "whichBrokerWhenConsumeSlowly"),
    ("notifyConsumerIdsChanged", "notifyConsumerIdsChangedEnable"),
)


async def cmd_update_sub_group(admin: Admin, args: argparse.Namespace) -> None:
    config: dict[str, Any] = {"groupName": args.groupName}
    for dest, key in SUB_GROUP_FLAGS:
        value = getattr(args, dest)
        if value is not None:
            config[key] = value
    addrs = await admin.update_sub_group(await target_addrs(admin, args), config)
    emit(args, {"config": config, "brokers": addrs},
         lambda: "\n".join(f"create subscription group to {a} success." for a in addrs) + f"\n{config}")


async def cmd_dlq_list(admin: Admin, args: argparse.Namespace) -> None:
    msgs = await dlq_messages(admin, args.groupName, args.maxNum, args.beginOffset)
    emit(args, {"group": args.groupName, "topic": dlq_topic(args.groupName),
                "messages": [message_json(m, 4096) for m in msgs]}, lambda: table(
        ("#Message ID", "#Origin Topic", "#Msg Key", "#Reconsume", "#QID", "#Offset", "#Store Time"),
        [(m.msg_id, m.properties.get("RETRY_TOPIC", ""), m.properties.get("UNIQ_KEY", ""), m.reconsume_times,
          m.queue_id, m.queue_offset, human_time(m.store_timestamp)) for m in msgs]))


async def cmd_resend_dlq(admin: Admin, args: argparse.Namespace) -> None:
    if bool(args.msgId) == bool(args.all):
        raise UsageError("give -i MSGID[,MSGID...] or -a (every dead letter dlqList shows), not both")
    ids = [i.strip() for part in args.msgId or [] for i in part.split(",") if i.strip()] or None
    rows = await resend_dlq(admin, args.groupName, ids, args.maxNum)
    emit(args, {"group": args.groupName, "resent": rows}, lambda: table(
        ("#Dead Letter ID", "#Origin Topic", "#Msg Key", "#New Msg ID"),
        [(r["msgId"], r["originTopic"], r["uniqKey"] or "", r["newMsgId"]) for r in rows])
        + f"\n\n{len(rows)} message(s) sent back to {rows[0]['retryTopic'] if rows else '%RETRY%' + args.groupName}")


async def cmd_broker_status(admin: Admin, args: argparse.Namespace) -> None:
    if args.brokerAddr:
        addrs = [args.brokerAddr]
    elif args.clusterName:
        addrs = await admin.all_broker_addrs(args.clusterName)
        if not addrs:
            raise AdminError(f"cluster {args.clusterName} has no broker")
    else:
        raise UsageError("one of -b brokerAddr or -c clusterName is required")
    tables = {addr: await admin.broker_status(addr) for addr in addrs}

    def text() -> str:
        width = max((len(k) for t in tables.values() for k in t), default=0)
        return "\n\n".join("\n".join(f"{k:<{width}} : {v}" for k, v in sorted(t.items())) if len(tables) == 1
                            else "\n".join(f"{addr:<22}{k:<{width}} : {v}" for k, v in sorted(t.items()))
                            for addr, t in tables.items())

    emit(args, tables[addrs[0]] if args.brokerAddr else {"brokers": tables}, text)


async def cmd_promote_slave(admin: Admin, args: argparse.Namespace) -> None:
    before = await admin.broker_status(args.brokerAddr)
    answer = await admin.promote_slave(args.brokerAddr, args.role, force=args.force)
    doc = {"brokerAddr": args.brokerAddr, "brokerName": before.get("brokerName", ""),
           "oldBrokerId": int(before.get("brokerId", "-1")), "brokerRole": answer.get("brokerRole", args.role),
           "brokerId": int(answer.get("brokerId", "0")), "epoch": answer.get("epoch") or None}
    emit(args, doc, lambda: f"promoted {args.brokerAddr} ({doc['brokerName']}, brokerId {doc['oldBrokerId']}) to "
         f"{doc['brokerRole']}, brokerId 0" + (f", leader epoch {doc['epoch']}" if doc["epoch"] else ""))


# -- parser ---------------------------------------------------------------------------------------------

Handler = Callable[[Admin, argparse.Namespace], Awaitable[None]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("-n", "--namesrvAddr", default=os.environ.get("NAMESRV_ADDR", DEFAULT_NAMESRV),
                        help="name server address list, e.g. 127.0.0.1:9876;127.0.0.2:9876")
        sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
        sp.set_defaults(fn=fn)
        return sp

    def target(sp: argparse.ArgumentParser, what: str) -> None:
        sp.add_argument("-b", "--brokerAddr", help=f"{what} to which broker")
        sp.add_argument("-c", "--clusterName", help=f"{what} to which cluster")

    sp = add("updateTopic", cmd_update_topic, "create or update a topic")
    target(sp, "create topic")
    sp.add_argument("-t", "--topic", required=True)
    sp.add_argument("-r", "--readQueueNums", type=int, default=8)
    sp.add_argument("-w", "--writeQueueNums", type=int, default=8)
    sp.add_argument("-p", "--perm", type=int, default=6, help="2 W, 4 R, 6 RW (default 6)")
    sp.add_argument("-o", "--order", type=parse_bool, default=False)
    sp.add_argument("-u", "--unit", type=parse_bool, default=False, help="ignored")
    sp.add_argument("-s", "--hasUnitSub", type=parse_bool, default=False, help="ignored")

    sp = add("deleteTopic", cmd_delete_topic, "delete a topic from a cluster's brokers and the name servers")
    sp.add_argument("-c", "--clusterName", required=True)
    sp.add_argument("-t", "--topic", required=True)

    sp = add("topicList", cmd_topic_list, "list topics")
    sp.add_argument("-c", "--clusterModel", action="store_true", help="with cluster and consumer group")

    sp = add("topicRoute", cmd_topic_route, "show a topic's route")
    sp.add_argument("-t", "--topic", required=True)
    sp.add_argument("-l", "--list", action="store_true", help="a table instead of the route JSON")

    sp = add("topicStatus", cmd_topic_status, "per-queue min/max offset and last update time")
    sp.add_argument("-t", "--topic", required=True)
    sp.add_argument("-c", "--cluster", help="ignored")

    sp = add("clusterList", cmd_cluster_list, "list clusters and their brokers")
    sp.add_argument("-c", "--clusterName", help="only this cluster")
    sp.add_argument("-m", "--moreStats", action="store_true", help="include the raw cluster info (JSON)")
    sp.add_argument("-i", "--interval", type=int, help="ignored")

    sp = add("consumerProgress", cmd_consumer_progress, "a group's per-queue offsets and lag")
    sp.add_argument("-g", "--groupName")
    sp.add_argument("-t", "--topic", help="only this topic")
    sp.add_argument("-s", "--showClientIP", type=parse_bool, default=False, help="ignored")

    sp = add("queryMsgById", cmd_query_msg_by_id, "a message by its offset message id")
    sp.add_argument("-i", "--msgId", required=True)
    sp.add_argument("-t", "--topic", help="look the id up as a unique key in this topic if it is no offset id")
    sp.add_argument("-g", "--consumerGroup", help="ignored")
    sp.add_argument("-d", "--clientId", help="ignored")
    sp.add_argument("-s", "--sendMessage", help="ignored")
    sp.add_argument("-u", "--unitName", help="ignored")

    sp = add("queryMsgByKey", cmd_query_msg_by_key, "messages by key (KEYS or UNIQ_KEY)")
    sp.add_argument("-t", "--topic", required=True)
    sp.add_argument("-k", "--msgKey", required=True)
    sp.add_argument("-b", "--beginTimestamp", type=parse_timestamp, default=0)
    sp.add_argument("-e", "--endTimestamp", type=parse_timestamp, default=None)
    sp.add_argument("-c", "--maxNum", type=int, default=64)

    sp = add("resetOffsetByTime", cmd_reset_offset_by_time, "reset a group's offsets on a topic to a time")
    sp.add_argument("-g", "--group", required=True)
    sp.add_argument("-t", "--topic", required=True)
    sp.add_argument("-s", "--timestamp", type=parse_timestamp, required=True,
                    help="now | currentTimeMillis | yyyy-MM-dd#HH:mm:ss:SSS")
    sp.add_argument("-f", "--force", type=parse_bool, default=True)
    sp.add_argument("-c", "--cplus", action="store_true", help="ignored")

    sp = add("updateSubGroup", cmd_update_sub_group, "create or update a subscription group")
    target(sp, "create subscription group")
    sp.add_argument("-g", "--groupName", required=True)
    sp.add_argument("-s", "--consumeEnable", type=parse_bool)
    sp.add_argument("-m", "--consumeFromMinEnable", type=parse_bool)
    sp.add_argument("-d", "--consumeBroadcastEnable", type=parse_bool)
    sp.add_argument("-o", "--consumeMessageOrderly", type=parse_bool)
    sp.add_argument("-q", "--retryQueueNums", type=int)
    sp.add_argument("-r", "--retryMaxTimes", type=int)
    sp.add_argument("-i", "--brokerId", type=int)
    sp.add_argument("-w", "--whichBrokerWhenConsumeSlowly", type=int)
    sp.add_argument("-a", "--notifyConsumerIdsChanged", type=parse_bool)

    sp = add("dlqList", cmd_dlq_list, "list a consumer group's dead letters (%DLQ%GROUP)")
    sp.add_argument("-g", "--groupName", required=True)
    sp.add_argument("-c", "--maxNum", type=int, default=64, help="at most this many (default 64)")
    sp.add_argument("-s", "--beginOffset", type=int, default=0, help="from this queue offset (default 0)")

    sp = add("resendDlq", cmd_resend_dlq, "send dead letters back to their group (%RETRY%GROUP)")
    sp.add_argument("-g", "--groupName", required=True)
    sp.add_argument("-i", "--msgId", action="append", help="offset message id(s) from dlqList; repeatable")
    sp.add_argument("-a", "--all", action="store_true", help="every dead letter dlqList -c MAXNUM shows")
    sp.add_argument("-c", "--maxNum", type=int, default=64, help="with -a: at most this many (default 64)")

    sp = add("brokerStatus", cmd_broker_status, "a broker's runtime status, role and replication state")
    target(sp, "status of")

    sp = add("promoteSlave", cmd_promote_slave, "make a slave the master of its broker group")
    sp.add_argument("-b", "--brokerAddr", required=True, help="the slave to promote")
    sp.add_argument("-r", "--role", choices=("ASYNC_MASTER", "SYNC_MASTER"), default="ASYNC_MASTER",
                    help="its new brokerRole (default ASYNC_MASTER)")
    sp.add_argument("--force", action="store_true",
                    help="promote even a slave whose recovery cut data and that has not caught up since "
                         "(an unclean election: acknowledged messages may be lost)")
    return p


async def run(args: argparse.Namespace) -> None:
    async with Admin(args.namesrvAddr, args.timeout) as admin:
        await args.fn(admin, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        runtime.run(run(args))
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (AdminError, ValueError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError) as exc:
        print(f"{PROG} {args.command}: error: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
