-- Sets webhook-operator.dev/renew-requested-at; the operator renews the (Avaya) subscription and echoes
-- the token to status.lastHandledRenewAt.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["webhook-operator.dev/renew-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
