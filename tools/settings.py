"""Settings kept as system parameters."""

import logging

_logger = logging.getLogger(__name__)


def days_parameter(env, param, default):
    """The whole number of days in system parameter ``param`` (0 or more);
    ``default`` when it is unset, or, with a warning in the log, when it
    is not a number."""
    value = env["ir.config_parameter"].sudo().get_param(param, default)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        _logger.warning("System parameter %s is not a number of days (%r); %s days are kept", param, value, default)
        return default
