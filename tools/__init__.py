from . import user_messages
