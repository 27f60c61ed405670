"""The Pulumi type tokens the offline checks read, in one place.

Why one module: policy, cost, reachability and the plan's views all pick resources by type token, and a
token spelled twice drifts (``aws:ec2/route:Route`` vs a renamed class). Tokens are the provider schema's
``<package>:<module>/<lowercased name>:<Name>`` (pulumi-aws 7, pulumi-gcp 8+, pulumi-kubernetes 4).
"""

from __future__ import annotations

from typing import Final

STACK: Final = "pulumi:pulumi:Stack"
PROVIDER_PREFIX: Final = "pulumi:providers:"

# --- AWS: network ---------------------------------------------------------------------------------------------
VPC: Final = "aws:ec2/vpc:Vpc"
VPC_CIDR_ASSOCIATION: Final = "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation"
SUBNET: Final = "aws:ec2/subnet:Subnet"
ROUTE_TABLE: Final = "aws:ec2/routeTable:RouteTable"
DEFAULT_ROUTE_TABLE: Final = "aws:ec2/defaultRouteTable:DefaultRouteTable"
"""Adopts a VPC's main route table (``defaultRouteTableId``); its ``routes`` are inline."""
ROUTE: Final = "aws:ec2/route:Route"
ROUTE_TABLE_ASSOCIATION: Final = "aws:ec2/routeTableAssociation:RouteTableAssociation"
MAIN_ROUTE_TABLE_ASSOCIATION: Final = "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation"
PEERING: Final = "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
PEERING_ACCEPTER: Final = "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP: Final = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
"""Adopts a VPC's default security group; its ``ingress``/``egress`` are inline."""
SECURITY_GROUP_RULE: Final = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS_RULE: Final = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INTERNET_GATEWAY: Final = "aws:ec2/internetGateway:InternetGateway"
NAT_GATEWAY: Final = "aws:ec2/natGateway:NatGateway"
VPN_CONNECTION: Final = "aws:ec2/vpnConnection:VpnConnection"
VPC_ENDPOINT: Final = "aws:ec2/vpcEndpoint:VpcEndpoint"
FLOW_LOG: Final = "aws:ec2/flowLog:FlowLog"
TGW_ATTACHMENTS: Final = frozenset(
    {
        "aws:ec2transitgateway/vpcAttachment:VpcAttachment",
        "aws:ec2transitgateway/peeringAttachment:PeeringAttachment",
        "aws:ec2transitgateway/connect:Connect",
    }
)
EIP: Final = "aws:ec2/eip:Eip"
EIP_ASSOCIATION: Final = "aws:ec2/eipAssociation:EipAssociation"
NETWORK_INTERFACE: Final = "aws:ec2/networkInterface:NetworkInterface"

# --- AWS: machines and storage --------------------------------------------------------------------------------
INSTANCE: Final = "aws:ec2/instance:Instance"
SPOT_INSTANCE_REQUEST: Final = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
AUTOSCALING_GROUP: Final = "aws:autoscaling/group:Group"
EBS_VOLUME: Final = "aws:ebs/volume:Volume"
SSM_PARAMETER: Final = "aws:ssm/parameter:Parameter"
AWS_SECRET_VERSION: Final = "aws:secretsmanager/secretVersion:SecretVersion"

# --- AWS: IAM and S3 ------------------------------------------------------------------------------------------
IAM_ROLE: Final = "aws:iam/role:Role"
IAM_INSTANCE_PROFILE: Final = "aws:iam/instanceProfile:InstanceProfile"
IAM_ROLE_POLICY: Final = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY: Final = "aws:iam/policy:Policy"
IAM_ROLE_POLICY_ATTACHMENT: Final = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
IAM_POLICY_ATTACHMENT: Final = "aws:iam/policyAttachment:PolicyAttachment"
IAM_POLICIES: Final = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
S3_BUCKETS: Final = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_BUCKET_POLICY: Final = "aws:s3/bucketPolicy:BucketPolicy"
S3_PUBLIC_ACCESS_BLOCKS: Final = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
S3_VERSIONINGS: Final = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
S3_ENCRYPTIONS: Final = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)

# --- GCP ------------------------------------------------------------------------------------------------------
GCP_NETWORK: Final = "gcp:compute/network:Network"
GCP_SUBNETWORK: Final = "gcp:compute/subnetwork:Subnetwork"
GCP_ROUTE: Final = "gcp:compute/route:Route"
GCP_FIREWALL: Final = "gcp:compute/firewall:Firewall"
GCP_INSTANCE: Final = "gcp:compute/instance:Instance"
GCP_INSTANCE_TEMPLATE: Final = "gcp:compute/instanceTemplate:InstanceTemplate"
GCP_REGION_INSTANCE_TEMPLATE: Final = "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate"
GCP_ADDRESS: Final = "gcp:compute/address:Address"
GCP_SECRET: Final = "gcp:secretmanager/secret:Secret"
GCP_SECRET_VERSION: Final = "gcp:secretmanager/secretVersion:SecretVersion"
GCP_SECRET_IAM_MEMBER: Final = "gcp:secretmanager/secretIamMember:SecretIamMember"
GCP_SECRET_IAM_BINDING: Final = "gcp:secretmanager/secretIamBinding:SecretIamBinding"
GCP_SECRET_IAM_POLICY: Final = "gcp:secretmanager/secretIamPolicy:SecretIamPolicy"
GCP_PROJECT_IAM_MEMBER: Final = "gcp:projects/iAMMember:IAMMember"
GCP_PROJECT_IAM_BINDING: Final = "gcp:projects/iAMBinding:IAMBinding"
GCP_PROJECT_IAM_POLICY: Final = "gcp:projects/iAMPolicy:IAMPolicy"
GCP_SERVICE_ACCOUNT: Final = "gcp:serviceaccount/account:Account"
GCP_INSTANCE_GROUP_MANAGER: Final = "gcp:compute/instanceGroupManager:InstanceGroupManager"
GCP_REGION_INSTANCE_GROUP_MANAGER: Final = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
GCP_UNPRICED_COMPUTE: Final = (GCP_INSTANCE, GCP_INSTANCE_TEMPLATE, GCP_ADDRESS)
"""GCP resources that cost money but have no price table in lmrun (listed as unpriced by the estimate)."""

# --- Kubernetes -----------------------------------------------------------------------------------------------
K8S_SERVICE: Final = "kubernetes:core/v1:Service"
K8S_DAEMONSET: Final = "kubernetes:apps/v1:DaemonSet"
