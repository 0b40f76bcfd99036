from . import sql, user_messages
