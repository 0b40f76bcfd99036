from . import mailchimp_mapping_wizard
