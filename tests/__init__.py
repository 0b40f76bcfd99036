from . import test_models
from . import test_access
from . import test_client
from . import test_sync
from . import test_webhooks
from . import test_webhook_routes
from . import test_views
from . import test_tour
