"""The names of the state files the service keeps in the spool directory: one place for the pipeline that
builds the stages and sinks writing them (collector/pipeline.py) and the shard take-up that moves them
(collector/shard_state.py). A new state file is added here, or a sharded upgrade leaves it behind."""

COST_TOTALS = "cost-totals.json"
HEALTH = "health-state.json"
POOL_DAYS = "pool-days.json"
CURTAILMENT_EFFICIENCY = "curtailment-efficiency.json"
CURTAILMENT_CONTROL = "curtailment-control.json"
CURTAILMENT_COMMANDS = "curtailment-commands.json"
CURTAILMENT_ACTIONS = "curtailment-actions.jsonl"  # the audit log's default place
MQTT_MINERS = "mqtt-miners.json"  # the MQTT miner ids held: cleared from the broker after a restart too

ALL = (COST_TOTALS, HEALTH, POOL_DAYS, CURTAILMENT_EFFICIENCY, CURTAILMENT_CONTROL, CURTAILMENT_COMMANDS,
       CURTAILMENT_ACTIONS, MQTT_MINERS)
