from messaging.models.dnc import DoNotContact  # noqa: F401
from messaging.models.inbound import InboundMessage  # noqa: F401, E402
from messaging.models.limits import FrequencyCap  # noqa: F401
from messaging.models.outbox import (  # noqa: F401
    Conversation,
    FallbackConfig,
    Message,
    RecipientGate,
)
from messaging.models.webhooks import (  # noqa: F401, E402
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
