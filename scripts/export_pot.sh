#!/usr/bin/env bash
# Regenerate i18n/mailchimp_sync.pot with Odoo's own exporter (trans_export):
# installs the addon into a throw-away database, exports the template of
# every translatable term of the module (Python _() / env._(), views, data,
# selections, field labels and help), and drops the database again.
# Uses the python that runs Odoo 18 (scripts/odoo_python.sh; set PYTHON to
# choose it) and the usual PG* variables for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/odoo_python.sh)
read -r -a DB_ARGS <<<"$("$PY" -c 'import sys; sys.path.insert(0, "scripts"); from odoo_env import db_args; print(" ".join(db_args()))')"
read -r -a DROP_ARGS <<<"$("$PY" -c 'import sys; sys.path.insert(0, "scripts"); from odoo_env import dropdb_args; print(" ".join(dropdb_args()))')"
db="mailchimp_sync_pot_$$"
log=".cache/$db.log"
mkdir -p .cache i18n
trap 'dropdb --if-exists ${DROP_ARGS[@]+"${DROP_ARGS[@]}"} "$db" || true' EXIT
common=(-d "$db" ${DB_ARGS[@]+"${DB_ARGS[@]}"} --no-http --max-cron-threads 0 --log-level warn --logfile "$log")
echo "export_pot: installing mailchimp_sync into $db (log in $log)" >&2
"$PY" -m odoo "${common[@]}" -i mailchimp_sync --without-demo all --stop-after-init
echo "export_pot: exporting" >&2
"$PY" -m odoo "${common[@]}" --i18n-export=i18n/mailchimp_sync.pot --modules=mailchimp_sync
count=$(grep -c '^msgid "' i18n/mailchimp_sync.pot)
echo "export_pot: i18n/mailchimp_sync.pot written, $((count - 1)) terms" >&2
