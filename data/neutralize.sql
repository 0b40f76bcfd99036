-- A neutralized copy (odoo neutralize: staging, tests) keeps its audiences,
-- mappings and sync history, but must not reach the live Mailchimp account:
-- remove the API keys and webhook secrets (webhooks pointing here are then
-- refused) and flag the accounts, which the account form shows.
UPDATE mailchimp_account
   SET api_key = NULL,
       data_center = NULL,
       webhook_secret = NULL,
       webhook_secret_pending = NULL,
       batch_webhook_state = 'unknown',
       neutralized = true;
