"""Creates SCRAM users and their ACLs on a Kafka cluster, as Strimzi's User Operator would from
k8s/users.yaml: reads {"bootstrap", "admin": [user, password], "users": [{"name", "password",
"acls": [{"type", "name", "prefix", "operations"}]}]} as JSON on stdin. Used by tests/acl.rs
(confluent-kafka from .venv-clients; the Rust client has no ACL or SCRAM admin API).
"""

import json
import sys

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "transactionalId": ResourceType.TRANSACTIONAL_ID}
OPS = {"Read": AclOperation.READ, "Write": AclOperation.WRITE, "Describe": AclOperation.DESCRIBE}


def main() -> None:
    spec = json.load(sys.stdin)
    admin_user, admin_password = spec["admin"]
    admin = AdminClient(
        {
            "bootstrap.servers": spec["bootstrap"],
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": admin_user,
            "sasl.password": admin_password,
        }
    )
    upserts = [
        UserScramCredentialUpsertion(
            u["name"], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), u["password"].encode()
        )
        for u in spec["users"]
    ]
    for user, future in admin.alter_user_scram_credentials(upserts).items():
        future.result(timeout=30)
    bindings = [
        AclBinding(
            KINDS[a["type"]],
            a["name"],
            ResourcePatternType.PREFIXED if a["prefix"] else ResourcePatternType.LITERAL,
            "User:" + u["name"],
            "*",
            OPS[op],
            AclPermissionType.ALLOW,
        )
        for u in spec["users"]
        for a in u["acls"]
        for op in a["operations"]
    ]
    for binding, future in admin.create_acls(bindings).items():
        future.result(timeout=30)
    print(f"{len(upserts)} users, {len(bindings)} ACL bindings")


if __name__ == "__main__":
    main()
