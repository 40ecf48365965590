-- Argo CD actions of a WebhookSubscription: ask the operator for a sync or a renewal now.
local actions = {}
actions["reconcile"] = { ["disabled"] = false }
local renewable = obj.spec ~= nil and obj.spec.avaya ~= nil
actions["renew"] = { ["disabled"] = not renewable }
return actions
