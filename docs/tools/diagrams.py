#!/usr/bin/env python3
"""Writes the book's diagrams (docs/src/images/*.svg): plain SVG, no dependencies.

    python3 docs/tools/diagrams.py

Each diagram is data below (boxes, arrows); edit it and run this again.
"""
import os
from html import escape

OUT = os.path.join(os.path.dirname(__file__), "..", "src", "images")
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
STYLE = {
    "step": ("#eef4fb", "#2f6db3"),
    "tls": ("#f3eefb", "#6b46b3"),
    "ok": ("#eaf7ee", "#2d8a4e"),
    "no": ("#fdeeee", "#b33a3a"),
    "aws": ("#fff6e5", "#b37a00"),
    "plain": ("#ffffff", "#555555"),
}


class Svg:
    def __init__(self, w, h, title):
        self.w, self.h, self.parts = w, h, []
        self.parts.append(f"<title>{escape(title)}</title>")
        self.parts.append(
            "<defs><marker id='a' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' orient='auto-start-reverse'>"
            "<path d='M0,0 L10,5 L0,10 z' fill='#444'/></marker></defs>"
        )
        self.parts.append(f"<rect width='{w}' height='{h}' fill='#ffffff'/>")

    def box(self, x, y, w, h, lines, kind="step", size=13, bold_first=True):
        fill, stroke = STYLE[kind]
        self.parts.append(f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='7' fill='{fill}' stroke='{stroke}' stroke-width='1.5'/>")
        n = len(lines)
        for i, line in enumerate(lines):
            ty = y + h / 2 + (i - (n - 1) / 2) * (size + 4) + size / 3
            weight = "bold" if (i == 0 and bold_first) else "normal"
            s = size if i == 0 else size - 2
            self.parts.append(f"<text x='{x + w / 2}' y='{ty:.1f}' text-anchor='middle' {FONT} font-size='{s}' font-weight='{weight}' fill='#222'>{escape(line)}</text>")

    def text(self, x, y, s, size=11, anchor="start", color="#555", italic=False):
        style = " font-style='italic'" if italic else ""
        self.parts.append(f"<text x='{x}' y='{y}' text-anchor='{anchor}' {FONT} font-size='{size}' fill='{color}'{style}>{escape(s)}</text>")

    def arrow(self, x1, y1, x2, y2, label=None, color="#444", dashed=False):
        dash = " stroke-dasharray='5,4'" if dashed else ""
        self.parts.append(f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='{color}' stroke-width='1.5' marker-end='url(#a)'{dash}/>")
        if label:
            self.text((x1 + x2) / 2 + 6, (y1 + y2) / 2 - 4, label, size=11)

    def region(self, x, y, w, h, label):
        self.parts.append(f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='10' fill='none' stroke='#999' stroke-width='1.2' stroke-dasharray='6,4'/>")
        self.text(x + 10, y + 18, label, size=12, color="#444")

    def write(self, name):
        body = "\n".join(self.parts)
        svg = f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {self.w} {self.h}' width='{self.w}' height='{self.h}' role='img'>\n{body}\n</svg>\n"
        with open(os.path.join(OUT, name), "w") as f:
            f.write(svg)


def connection_path():
    steps = [
        ("CONNECT host:443", "strict target parse: a DNS name, an allowed port", "policy::authority"),
        ("class", "the S3 endpoint grammar, other services' names", "policy::host"),
        ("plan", "which routes of the name's service may carry it", "policy::connect::plan"),
        ("resolve", "A records only, through dns.servers", "dns"),
        ("choose", "the first answer inside a candidate route's CIDRs", "policy::connect::choose"),
        ("dial", "exactly the checked address (inspect: at the first request)", "proxy::connect"),
    ]
    s = Svg(860, 700, "The path of one connection through vpcgate")
    x, w, h, gap = 150, 300, 52, 24
    y = 20
    for i, (name, what, module) in enumerate(steps):
        s.box(x, y, w, h, [name, what])
        s.text(x + w + 16, y + h / 2 + 4, module, size=11, color="#2f6db3")
        if i > 0:
            s.arrow(x + w / 2, y - gap, x + w / 2, y)
        # every step can refuse
        s.arrow(x, y + h / 2, 110, y + h / 2, color="#b33a3a", dashed=True)
        y += h + gap
    s.box(10, 20, 96, 6 * (h + gap) - gap, ["refused", "code,", "status,", "one", "sentence:", "what to", "change"], kind="no", size=13)
    # TLS modes
    ty = y + 10
    s.arrow(x + w / 2, y - gap, x + 70, ty)
    s.arrow(x + w / 2, y - gap, x + w + 80, ty)
    s.box(x - 40, ty, 220, 78, ["tls.mode = passthrough", "both hellos checked: SNI = host,", "TLS 1.2+, forward secrecy;", "then bytes relayed"], kind="tls")
    s.box(x + w - 10, ty, 260, 78, ["tls.mode = inspect", "TLS with a leaf from vpcgate's", "name-constrained CA; each request:", "Host, SigV2, smuggling, bucket"], kind="tls")
    s.text(x + w - 10, ty + 96, "policy::tls, policy::handshake, policy::request, proxy::inspect", size=11, color="#6b46b3")
    uy = ty + 130
    s.arrow(x + 70, ty + 78, x + w / 2, uy)
    s.arrow(x + w + 120, ty + 78, x + w / 2, uy)
    s.box(x, uy, w, 56, ["upstream: the VPC endpoint", "TLS 1.2+ with forward secrecy, verified"], kind="aws")
    s.box(x + w + 40, uy, 300, 56, ["evidence", "connect, request, close lines: route, CIDR, proof"], kind="ok")
    s.arrow(x + w, uy + 28, x + w + 40, uy + 28, dashed=True)
    s.write("connection-path.svg")


def deploy_ec2():
    s = Svg(860, 380, "EC2 host: clients, vpcgate, the route table and the gateway endpoint")
    s.region(10, 10, 420, 250, "EC2 instance (subnet-…)")
    s.box(30, 50, 170, 60, ["aws CLI, boto3, …", "HTTPS_PROXY=127.0.0.1:3128"], kind="plain")
    s.box(30, 160, 170, 70, ["vpcgate", "checks each address is in", "the prefix list"])
    s.arrow(115, 110, 115, 160, "CONNECT")
    s.box(240, 40, 175, 70, ["audit.require", "asks EC2: does the route table", "send pl-… to vpce-…?"], kind="ok")
    s.arrow(300, 110, 200, 165, dashed=True)
    s.region(450, 10, 400, 250, "VPC")
    s.box(470, 50, 180, 70, ["route table rtb-…", "pl-63a5400a → vpce-…", "0.0.0.0/0 → nat-…"], kind="step")
    s.box(680, 50, 150, 70, ["gateway endpoint", "vpce-… (S3)"], kind="aws")
    s.box(470, 175, 160, 60, ["NAT / internet", "gateway"], kind="no")
    s.arrow(200, 200, 470, 110)
    s.text(250, 205, "TCP to S3's public address", size=11)
    s.arrow(650, 80, 680, 80)
    s.arrow(550, 120, 550, 175, color="#b33a3a", dashed=True)
    s.text(560, 155, "only without the route", size=11, color="#b33a3a")
    s.box(620, 290, 210, 60, ["Amazon S3", "(public addresses)"], kind="aws")
    s.arrow(755, 120, 725, 290)
    s.arrow(550, 235, 640, 290, color="#b33a3a", dashed=True)
    s.text(20, 300, "The addresses are the same either way: only the route table makes them private.", size=12, color="#333")
    s.text(20, 320, "vpcgate refuses the route (route_unproven) while AWS cannot show that route.", size=12, color="#333")
    s.write("deploy-ec2.svg")


def deploy_sidecar():
    s = Svg(860, 330, "Kubernetes sidecar: the pod's egress rules admit only vpcgate")
    s.region(10, 10, 560, 300, "pod (one network namespace)")
    s.box(30, 60, 200, 70, ["application container", "HTTPS_PROXY=127.0.0.1:3128", "UID 1000"], kind="plain")
    s.box(30, 200, 200, 70, ["vpcgate (native sidecar)", "127.0.0.1:3128", "UID 10001"])
    s.arrow(130, 130, 130, 200, "loopback")
    s.box(300, 120, 250, 80, ["egress rules (init container)", "iptables owner match:", "only UID 10001 leaves the pod;", "loopback and DNS stay open"], kind="ok")
    s.arrow(230, 235, 620, 235)
    s.text(250, 228, "only vpcgate's UID leaves", size=11)
    s.arrow(230, 95, 620, 95, "direct: rejected", color="#b33a3a", dashed=True)
    s.box(620, 60, 220, 70, ["AWS", "(any path)"], kind="no")
    s.box(620, 200, 220, 70, ["VPC endpoints", "S3 gateway, STS interface"], kind="aws")
    s.write("deploy-sidecar.svg")


def deploy_laptop():
    s = Svg(860, 330, "Laptop over VPN: vpcgate resolves the endpoint's name through the Route 53 Resolver")
    s.region(10, 10, 270, 300, "laptop")
    s.box(30, 50, 230, 60, ["aws CLI, boto3, …", "HTTPS_PROXY=127.0.0.1:3128"], kind="plain")
    s.box(30, 180, 230, 80, ["vpcgate", "resolves vpce-….s3.REGION", ".vpce.amazonaws.com,", "dials the answer in 10.0.0.0/16"])
    s.arrow(145, 110, 145, 180, "CONNECT")
    s.box(300, 140, 120, 60, ["Site-to-Site", "VPN"], kind="step")
    s.arrow(260, 220, 300, 180)
    s.region(440, 10, 410, 300, "VPC 10.0.0.0/16")
    s.box(470, 50, 360, 60, ["Route 53 Resolver inbound endpoint", "10.0.0.10, 10.0.1.10 (dns.servers)"], kind="step")
    s.box(470, 200, 360, 70, ["S3 interface endpoint", "network interfaces 10.0.x.y (the route's CIDRs)", "SNI and Host stay bucket.s3.REGION…"], kind="aws")
    s.arrow(420, 160, 470, 90, "DNS")
    s.arrow(420, 180, 470, 230, "TLS")
    s.write("deploy-laptop.svg")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    connection_path()
    deploy_ec2()
    deploy_sidecar()
    deploy_laptop()
