"""A policy plugin for tests/adapters/test_openai_agents.py: ``before_run`` ends the run
early with a refusal when the user's message contains ``config["keyword"]``."""


class OaiPolicyPlugin:
    name = "oai-policy"
    version = "1.0.0"

    def initialize(self, config):
        self.keyword = str(config.get("keyword", "/deny"))

    def before_run(self, message):
        if self.keyword in str(message.get("content", "")):
            return {"role": "assistant", "content": f"Refused by policy: {self.keyword!r}."}
        return None
