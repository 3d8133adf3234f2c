-- Argo CD health check for routero.ai resources (RouteroTeam, RouteroKey and RouteroMember share it).
-- Healthy:     Ready=True, and the operator has seen the current spec (status.observedGeneration == generation).
-- Degraded:    Ready=False for the current spec with a reason that only a change to the spec or to the gateway
--              object fixes.
-- Progressing: anything else: no status yet, a spec the operator has not seen yet, or a reason the operator
--              recovers from by itself (GatewayUnavailable, TeamNotReady, MemberNotReady, ...).
local terminal = {
  Conflict = true,
  SecretConflict = true,
  Invalid = true,
  ModelNotAllowed = true,
  RegenerateUnsupported = true,
  Forbidden = true,
  GatewayError = true,
}

local hs = { status = "Progressing", message = "Waiting for the operator to reconcile" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end

local reason = ready.reason or ""
if ready.message ~= nil and ready.message ~= "" then
  hs.message = reason .. ": " .. ready.message
else
  hs.message = reason
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and terminal[reason] then
  hs.status = "Degraded"
end
return hs
