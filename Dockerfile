# syntax=docker/dockerfile:1
# The greet server image: `docker build -t greet:0.1.0 .` then
# `docker run --rm -p 8080:8080 greet:0.1.0` (flags or GREET_* variables configure it, e.g.
# `-e GREET_WORKERS=2 -e GREET_GRACE=20`). Runs as an unprivileged user; deploy/k8s uses it.

# Build stage: turn the project into a wheel (hatchling comes from PyPI, in this stage only).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY greet ./greet
COPY generated ./generated
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Run stage: the wheel and its pinned dependencies, no compilers, no source tree.
FROM python:3.11-slim
# GREET_HOST="::": every IPv6 and IPv4 address (one dual-stack socket), so the image serves on
# IPv4-only, IPv6-only and dual-stack networks; set GREET_HOST=0.0.0.0 where the kernel has no
# IPv6 at all.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GREET_HOST="::"
RUN groupadd --system --gid 10001 greet \
    && useradd --system --uid 10001 --gid greet --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin greet
# The dependencies first, in a layer of their own: exactly the versions in constraints.txt
# (written by `nox -s lock`), each file checked against its hash, wheels only.
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/constraints.txt \
    && rm /tmp/constraints.txt
# Then greet itself, resolving nothing; pip check fails the build if the lock missed a dependency.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels && pip check
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Exec form: python is PID 1 and gets SIGTERM itself; greet.server drains on it (--grace) and,
# with --workers N, reaps its own worker processes, so no init process is needed.
CMD ["python", "-m", "greet.server"]
