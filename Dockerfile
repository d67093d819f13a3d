# mailguard: outbound SMTP relay. Build: docker build -t mailguard .
FROM python:3.11-slim

RUN useradd --system --home-dir /var/lib/mailguard --create-home mailguard
WORKDIR /opt/mailguard
COPY pyproject.toml README.md ./
COPY mailguard ./mailguard
RUN pip install --no-cache-dir '.[ocr]' && rm -rf /root/.cache
COPY policies /etc/mailguard/policies

ENV MAILGUARD_SMTP_LISTEN=0.0.0.0:2525 \
    MAILGUARD_WEB_LISTEN=0.0.0.0:8025 \
    MAILGUARD_DATA_DIR=/var/lib/mailguard \
    MAILGUARD_POLICIES_DIR=/etc/mailguard/policies \
    PYTHONUNBUFFERED=1

USER mailguard
VOLUME ["/var/lib/mailguard"]
EXPOSE 2525 8025
# SIGTERM lets deliveries under way finish; nothing accepted is lost either way.
STOPSIGNAL SIGTERM
CMD ["mailguard", "serve"]
