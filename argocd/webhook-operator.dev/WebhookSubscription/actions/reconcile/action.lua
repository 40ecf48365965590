-- Sets webhook-operator.dev/reconcile-requested-at; the operator checks the provider and echoes the
-- token to status.lastHandledReconcileAt.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["webhook-operator.dev/reconcile-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
