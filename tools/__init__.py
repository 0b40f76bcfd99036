from . import sql, threads, user_messages
