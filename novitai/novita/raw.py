"""Novita's answers as they arrive, before parsing: the JSON shapes of docs/novita-api.md that the
parser (parsing.py) consumes, as TypedDicts.

Every key is optional (`total=False`): Novita leaves fields out, and the parser decides what is
required (an id, say). A value's type is what Novita has been seen to send, strings for numbers
included (§4.3: "16", "17000"); the parser coerces. Keys the parser never reads are declared
where the documentation shows them, so that a fixture of a whole answer type-checks (tests/novita
annotate theirs). tests/novita/test_raw_shapes.py checks that every key the parser reads is
declared here.
"""

from __future__ import annotations

from typing import TypedDict

Number = int | float | str  # a number, or a numeric string


class RawCluster(TypedDict, total=False):  # §2.1
    id: str
    name: str
    availableGpuType: list[str] | dict[str, str]  # the docs render an empty one as {}
    supportNetworkStorage: bool
    supportInstanceNetwork: bool


class RawMonthlyPrice(TypedDict, total=False):
    price: Number
    month: Number


class RawProduct(TypedDict, total=False):  # §2.2, §7.1
    id: str
    name: str
    cpuPerGpu: Number
    memoryPerGpu: Number
    diskPerGpu: Number
    availableDeploy: bool
    availableGpuNumber: Number
    minRootFS: Number
    maxRootFS: Number
    minLocalStorage: Number
    maxLocalStorage: Number
    regions: list[str]
    price: Number  # 1/100000 USD per GPU-hour
    spotPrice: Number
    monthlyPrice: list[RawMonthlyPrice]
    billingMethods: list[str]
    inventoryState: str  # none | low | normal | high
    exitedLocalStoragePrice: Number  # 1/100000 USD per GB per day (unsure: §7.1)
    cudaVersion: str  # undocumented; read where a product says its nodes' CUDA version (§7.5)


class RawEnv(TypedDict, total=False):
    key: str
    value: str


class RawPortGroup(TypedDict, total=False):
    type: str  # http | tcp
    ports: list[Number]


class RawTemplate(TypedDict, total=False):  # §2.3, §7.5
    Id: str  # capital I on the v1 templates
    id: str
    user: str
    name: str
    readme: str
    logo: str
    type: str
    channel: str
    image: str
    imageAuth: str  # a registry-auth id, not credentials
    startCommand: str
    rootfsSize: Number
    volumes: list[dict[str, object]]
    ports: list[RawPortGroup]
    envs: list[RawEnv]
    tools: list[dict[str, object]]
    createTime: Number  # the list's
    createdAt: Number  # get-template's
    entrypoint: str
    minCudaVersion: str
    recommendCards: list[dict[str, object]]


class RawStatusError(TypedDict, total=False):
    state: str
    message: str


class RawPortMapping(TypedDict, total=False):
    port: Number
    endpoint: str  # absent or "" while not running, and on list items (§2.5)
    type: str


class RawVolumeMount(TypedDict, total=False):
    type: str  # local | network
    size: Number  # an int on get, a string on list
    id: str
    mountPath: str


class RawInstanceJob(TypedDict, total=False):
    id: str
    type: str


class RawSshComponent(TypedDict, total=False):
    sshCommand: str
    command: str
    host: str
    port: Number
    user: str
    username: str
    password: str  # read into a Secret
    isRunning: bool


class RawLogComponent(TypedDict, total=False):
    systemLogAddress: str
    instanceLogAddress: str
    isRunning: bool


class RawInstance(TypedDict, total=False):  # §2.5 (list items), §2.6 (get-instance)
    id: str
    name: str
    clusterId: str
    clusterName: str
    status: str  # §3; unknown values are kept
    statusError: RawStatusError
    imageUrl: str
    imageAuthId: str
    command: str
    entrypoint: str
    cpuNum: Number
    memory: Number
    gpuNum: Number
    productId: str
    productName: str
    rootfsSize: Number
    kind: str
    billingMode: str  # may be ""
    endTime: str
    spotStatus: str  # running | notified | reclaiming | terminated, or ""
    spotReclaimTime: Number
    network: dict[str, str]
    portMappings: list[RawPortMapping]
    volumeMounts: list[RawVolumeMount]
    envs: list[RawEnv]
    node: list[dict[str, object]]
    jobs: list[RawInstanceJob]
    connectComponentSSH: RawSshComponent
    connectComponentWebTerminal: dict[str, object]  # never read: it holds a password
    connectComponentJupyter: dict[str, object]
    connectComponentLog: RawLogComponent
    freeStorageSize: Number
    keepDataDay: Number
    createdAt: Number  # older pages only (§7.5): decide nothing on these
    lastStartedAt: Number
    lastStoppedAt: Number
    sshCommand: str  # older, flat
    sshPassword: str


class RawInstancesPage(TypedDict, total=False):  # GET /gpu/instances
    instances: list[RawInstance]
    total: int


class RawCreated(TypedDict, total=False):  # POST /gpu/instance/create
    id: str
