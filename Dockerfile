# One image for the collector and the simulators: `hashfleet collect` / `hashfleet simulate`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY collector ./collector
COPY simulators ./simulators
COPY dashboards ./dashboards
RUN pip install --no-cache-dir . && useradd --system --uid 10001 hashfleet
USER hashfleet
ENTRYPOINT ["hashfleet"]
CMD ["--help"]
