-- Argo CD health of a WebhookSubscription (webhook-operator.dev/v1alpha1).
-- Order: being deleted, paused, a spec the operator has not seen yet, then the Ready condition's reason.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

if obj.metadata.deletionTimestamp ~= nil then
  -- The finalizer holds the object until the remote subscription is gone (or orphaned).
  hs.status = "Progressing"
  local synced = condition("Synced")
  if synced ~= nil and synced.status == "False" then
    hs.message = "Deleting the remote subscription: " .. (synced.reason or "") .. ": " .. (synced.message or "")
  else
    hs.message = "Deleting the remote subscription"
  end
  return hs
end

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

local ready = condition("Ready")
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

-- The operator is working on it: the provider is creating it, a transient failure or a failed test
-- delivery is retried, or the provider does not show a change yet.
local progressing = { Creating = true, Unavailable = true, DestinationUnverified = true, NotVisibleYet = true }
if progressing[ready.reason] then
  hs.status = "Progressing"
else
  -- InvalidSpec, ProviderNotReady, AlreadyExists, NotFound, AdoptionAmbiguous, AlreadyClaimed, Expired,
  -- DisabledByProvider: a person has to act.
  hs.status = "Degraded"
end
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
