"""The sandbox's seed catalog: regions, GPU products per region, templates, registry auths,
prices, and the network storage that exists from the start.

Tests of other parts of novitai are written against these values; change them only with care
(README.md in this package lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str  # display name, "EU-NL-01 (Amsterdam)"
    support_network_storage: bool
    support_instance_network: bool
    # The same cluster under Fidelity(cluster_ids="numeric"): id "5", name "EU-01".
    numeric_id: str = ""
    numeric_name: str = ""


@dataclass(frozen=True)
class Offer:
    """A product in one region."""

    available_deploy: bool
    inventory_state: str  # none | low | normal | high
    available_gpus: int  # how many GPUs one instance may take there


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    cpu_per_gpu: int
    memory_per_gpu: int
    disk_per_gpu: int
    price: int  # on-demand, 1/100000 USD per GPU-hour
    spot_price: int  # 0: no spot offer
    monthly_prices: tuple[tuple[int, int], ...]  # (price, month)
    offers: dict[str, Offer]  # cluster id -> offer
    min_rootfs: int = 10
    max_rootfs: int = 1000
    min_local_storage: int = 0
    max_local_storage: int = 200
    billing_methods: tuple[str, ...] = field(default=())
    # A stopped (exited) instance's local disk: 1/100000 USD per GB per day (Novita's console
    # field; $0.005/GB/day is the disk price of its pricing page).
    exited_local_storage_price: int = 500

    @property
    def methods(self) -> tuple[str, ...]:
        if self.billing_methods:
            return self.billing_methods
        methods = ["onDemand"]
        if self.monthly_prices:
            methods.append("monthly")
        if self.spot_price:
            methods.append("spot")
        return tuple(methods)


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    channel: str
    image: str
    image_auth: str  # registry-auth id, "" for a public image
    start_command: str
    rootfs_size: int
    http_ports: tuple[int, ...]
    tcp_ports: tuple[int, ...]
    envs: tuple[tuple[str, str], ...]
    readme: str = ""
    volume_size: int = 0
    tools: tuple[tuple[str, str, int], ...] = ()  # (name, describe, http port)
    create_time: int = 1754032100
    # Only on GET /template (novita-api.md §7.5):
    entrypoint: str = ""
    min_cuda_version: str = ""
    recommend_cards: tuple[tuple[str, int], ...] = ()  # (product id, cards)


@dataclass(frozen=True)
class RegistryAuth:
    id: str
    name: str
    username: str
    password: str


@dataclass(frozen=True)
class SeedStorage:
    id: str
    name: str
    cluster_id: str
    size: int  # GB


CLUSTERS: tuple[Cluster, ...] = (
    Cluster("us-tx-2", "US-TX-02 (Dallas)", True, True, "1", "US-01"),
    Cluster("us-ca-6", "US-CA-06 (California)", True, False, "2", "US-02"),
    Cluster("eu-nl-1", "EU-NL-01 (Amsterdam)", True, False, "5", "EU-01"),
    Cluster("eu-de-1", "EU-DE-01 (Frankfurt)", False, False, "6", "EU-02"),
    Cluster("as-jp-3", "AS-JP-03 (Osaka)", False, False, "8", "AS-01"),
)

# Network storage: 1/100000 USD per GB per day, per cluster ($0.002/GB/day, Novita's pricing
# page); the same in every cluster that has network storage until the control API changes it.
NETWORK_STORAGE_PRICE = 200
NETWORK_STORAGE_MIN_GB = 10
NETWORK_STORAGE_MAX_GB = 10_000  # above: NETWORK_STORAGE_TOO_LARGE

# The volume of novita-api.md §5.1 exists from the start (and after every reset).
SEED_STORAGES: tuple[SeedStorage, ...] = (SeedStorage("ns-7f3c21", "datasets", "us-tx-2", 100),)


def _offer(state: str) -> Offer:
    gpus = {"none": 0, "low": 2, "normal": 8, "high": 8}[state]
    return Offer(available_deploy=state != "none", inventory_state=state, available_gpus=gpus)


HIGH, NORMAL, LOW, NONE = _offer("high"), _offer("normal"), _offer("low"), _offer("none")

PRODUCTS: tuple[Product, ...] = (
    Product(
        id="4090.16c62g.sim",
        name="RTX 4090 24GB",
        cpu_per_gpu=16,
        memory_per_gpu=62,
        disk_per_gpu=200,
        price=34000,
        spot_price=17000,
        monthly_prices=((21500000, 1), (61000000, 3)),
        offers={"us-tx-2": HIGH, "us-ca-6": NORMAL, "eu-nl-1": LOW},
    ),
    # The cheap one: unavailable in the popular Dallas region, so fallback has work to do.
    Product(
        id="3090.8c31g.sim",
        name="RTX 3090 24GB",
        cpu_per_gpu=8,
        memory_per_gpu=31,
        disk_per_gpu=100,
        price=18000,
        spot_price=9000,
        monthly_prices=(),
        offers={"us-tx-2": NONE, "eu-nl-1": NORMAL, "eu-de-1": HIGH},
        max_rootfs=500,
    ),
    Product(
        id="4080s.12c46g.sim",
        name="RTX 4080 SUPER 16GB",
        cpu_per_gpu=12,
        memory_per_gpu=46,
        disk_per_gpu=150,
        price=24000,
        spot_price=12500,
        monthly_prices=(),
        offers={"us-tx-2": NORMAL, "us-ca-6": HIGH},
        max_rootfs=500,
    ),
    Product(
        id="5090.16c92g.sim",
        name="RTX 5090 32GB",
        cpu_per_gpu=16,
        memory_per_gpu=92,
        disk_per_gpu=250,
        price=69000,
        spot_price=35000,
        monthly_prices=((44000000, 1),),
        offers={"us-tx-2": LOW, "eu-de-1": NORMAL},
    ),
    Product(
        id="a6000.10c60g.sim",
        name="RTX A6000 48GB",
        cpu_per_gpu=10,
        memory_per_gpu=60,
        disk_per_gpu=200,
        price=49000,
        spot_price=24000,
        monthly_prices=(),
        offers={"us-ca-6": NORMAL, "eu-de-1": LOW, "as-jp-3": HIGH},
    ),
    # No spot offer: spotPrice "0", no "spot" in billingMethods.
    Product(
        id="l40s.16c120g.sim",
        name="L40S 48GB",
        cpu_per_gpu=16,
        memory_per_gpu=120,
        disk_per_gpu=300,
        price=86000,
        spot_price=0,
        monthly_prices=((55000000, 1), (156000000, 3)),
        offers={"eu-nl-1": HIGH, "eu-de-1": NORMAL},
    ),
    Product(
        id="a100.16c120g.sim",
        name="A100 SXM 80GB",
        cpu_per_gpu=16,
        memory_per_gpu=120,
        disk_per_gpu=400,
        price=139000,
        spot_price=69000,
        monthly_prices=((89000000, 1),),
        offers={"as-jp-3": NORMAL, "us-ca-6": LOW},
        max_rootfs=2000,
        max_local_storage=800,
    ),
    # availableDeploy false everywhere.
    Product(
        id="h100.24c240g.sim",
        name="H100 SXM 80GB",
        cpu_per_gpu=24,
        memory_per_gpu=240,
        disk_per_gpu=400,
        price=239000,
        spot_price=129000,
        monthly_prices=(),
        offers={"us-tx-2": NONE, "as-jp-3": NONE},
        max_rootfs=2000,
        max_local_storage=800,
    ),
)

REGISTRY_AUTHS: tuple[RegistryAuth, ...] = (
    RegistryAuth("k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8", "ghcr.io", "sim-bot", "ghp_simulated"),
    RegistryAuth(
        "d9f1h3j5l7n9p1r3t5v7x9z1b3d5f7h9", "registry.example.com", "ci", "not-a-real-secret"
    ),
)

TEMPLATES: tuple[Template, ...] = (
    Template(
        id="40117",
        name="pytorch-jupyter",
        channel="private",
        image="ghcr.io/example/pytorch-lab:2.4",
        image_auth="k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
        start_command="",
        rootfs_size=40,
        http_ports=(8888, 7860),
        tcp_ports=(22,),
        envs=(("JUPYTER_TOKEN", "demo-token"), ("PYTHONUNBUFFERED", "1")),
        readme="# PyTorch\nJupyter on 8888, Gradio on 7860",
        volume_size=30,
        tools=(("Jupyter", "JupyterLab", 8888),),
        min_cuda_version="12.4",
        recommend_cards=(("4090.16c62g.sim", 1),),
    ),
    Template(
        id="212",
        name="comfyui",
        channel="official",
        image="ghcr.io/example/comfyui:latest",
        image_auth="",
        start_command="",
        rootfs_size=60,
        http_ports=(8188,),
        tcp_ports=(),
        envs=(),
        readme="# ComfyUI\nUI on 8188",
    ),
    Template(
        id="107672",
        name="vllm-openai",
        channel="community",
        image="vllm/vllm-openai:v0.6.3",
        image_auth="",
        start_command="--model Qwen/Qwen2.5-7B-Instruct --port 8000",
        rootfs_size=100,
        http_ports=(8000,),
        tcp_ports=(),
        envs=(("HF_HOME", "/workspace/hf"),),
        readme="# vLLM\nOpenAI-compatible server on 8000",
        entrypoint="python3 -m vllm.entrypoints.openai.api_server",
        min_cuda_version="12.1",
        recommend_cards=(("4090.16c62g.sim", 1), ("a100.16c120g.sim", 1)),
    ),
    Template(
        id="50211",
        name="ubuntu-ssh",
        channel="official",
        image="ubuntu:22.04",
        image_auth="",
        start_command="sleep infinity",
        rootfs_size=20,
        http_ports=(),
        tcp_ports=(22,),
        envs=(),
        readme="# Ubuntu\nssh only",
    ),
)

CLUSTERS_BY_ID = {c.id: c for c in CLUSTERS}
CLUSTERS_BY_NUMERIC_ID = {c.numeric_id: c for c in CLUSTERS}
PRODUCTS_BY_ID = {p.id: p for p in PRODUCTS}
TEMPLATES_BY_ID = {t.id: t for t in TEMPLATES}
REGISTRY_AUTHS_BY_ID = {a.id: a for a in REGISTRY_AUTHS}
TEMPLATE_USER = "5512093348812290"
