from . import test_models
from . import test_access
from . import test_client
from . import test_sync
