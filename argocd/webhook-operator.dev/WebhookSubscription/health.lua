-- Argo CD health of a WebhookSubscription (webhook-operator.dev/v1alpha1).
-- Order: a spec the operator has not seen yet, pause, then the Ready condition's reason.
local hs = {}

local annotations = obj.metadata.annotations or {}
if annotations["webhook-operator.dev/paused"] == "true" then
  hs.status = "Suspended"
  hs.message = "Paused by the webhook-operator.dev/paused annotation"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the subscription"
  return hs
end

if obj.metadata.generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end

local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Available"
  return hs
end

-- Creating or renewing, or retrying a transient failure: the operator is working on it.
local progressing = { Creating = true, Deleting = true, Unavailable = true }
if progressing[ready.reason] then
  hs.status = "Progressing"
else
  -- InvalidSpec, ProviderNotReady, AlreadyExists, NotFound, AdoptionAmbiguous, Expired: needs a fix.
  hs.status = "Degraded"
end
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
