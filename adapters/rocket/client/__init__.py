"""A RocketMQ client for Python: asyncio first, with a small synchronous facade.

Async: ``Producer``, ``TransactionProducer``, ``PushConsumer``, ``LitePullConsumer``. Sync (a
background event-loop thread): ``DefaultMQProducer``, ``TransactionMQProducer``,
``DefaultMQPushConsumer``, ``DefaultLitePullConsumer``.
Names and defaults follow RocketMQ's Java client, in snake_case.
"""

from ..message import Message
from ._msgutil import new_message
from .allocate import (
    AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle,
    AllocateMessageQueueByConfig,
    AllocateMessageQueueConsistentHash,
    AllocateMessageQueueStrategy,
)
from .common import (
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    ConsumeOrderlyStatus,
    MessageModel,
    MessageQueue,
    PullStatus,
    SendResult,
    SendStatus,
)
from .config import ClientConfig
from .errors import MessageIllegalError, MQBrokerError, MQClientError, NoRouteError
from .listener import (
    ConsumeConcurrentlyContext,
    ConsumeOrderlyContext,
    MessageListenerConcurrently,
    MessageListenerOrderly,
)
from .lite_pull_consumer import LitePullConsumer
from .producer import Producer, SendCallback
from .push_consumer import PushConsumer
from .selector import (
    FunctionSelector,
    MessageQueueSelector,
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
)
from .sync import (
    DefaultLitePullConsumer,
    DefaultMQProducer,
    DefaultMQPushConsumer,
    TransactionMQProducer,
)
from .transaction_producer import (
    LocalTransactionState,
    TransactionListener,
    TransactionProducer,
    TransactionSendResult,
)

__all__ = [
    "AllocateMessageQueueAveragely",
    "AllocateMessageQueueAveragelyByCircle",
    "AllocateMessageQueueByConfig",
    "AllocateMessageQueueConsistentHash",
    "AllocateMessageQueueStrategy",
    "ClientConfig",
    "ConsumeConcurrentlyContext",
    "ConsumeConcurrentlyStatus",
    "ConsumeFromWhere",
    "ConsumeOrderlyContext",
    "ConsumeOrderlyStatus",
    "DefaultLitePullConsumer",
    "DefaultMQProducer",
    "DefaultMQPushConsumer",
    "FunctionSelector",
    "LitePullConsumer",
    "LocalTransactionState",
    "MQBrokerError",
    "MQClientError",
    "Message",
    "MessageIllegalError",
    "MessageListenerConcurrently",
    "MessageListenerOrderly",
    "MessageModel",
    "MessageQueue",
    "MessageQueueSelector",
    "NoRouteError",
    "Producer",
    "PullStatus",
    "PushConsumer",
    "SelectMessageQueueByHash",
    "SelectMessageQueueByRandom",
    "SendCallback",
    "SendResult",
    "SendStatus",
    "TransactionListener",
    "TransactionMQProducer",
    "TransactionProducer",
    "TransactionSendResult",
    "new_message",
]
