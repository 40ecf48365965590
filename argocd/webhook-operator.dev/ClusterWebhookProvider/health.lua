-- Argo CD health of a ClusterWebhookProvider (webhook-operator.dev/v1alpha1): its Ready condition says whether
-- the credentials obtain a token from the provider. Same script for both provider kinds.
local hs = {}

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end

if ready == nil or (obj.metadata.generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the credentials"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "CredentialsValid"
  return hs
end

-- The token endpoint could not be reached: retried. Anything else (a missing Secret or key, refused
-- credentials, an incomplete spec) needs a person.
if ready.reason == "Unreachable" then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
