# STM32F411CE ("Black Pill") cross build: `make board` -> build/board/robot_fw.{elf,bin}
# BOARD_BACKEND=pwm builds the hobby-servo variant.
ARM_CC := arm-none-eabi-gcc
ARM_OBJCOPY := arm-none-eabi-objcopy
ARM_SIZE := arm-none-eabi-size
BOARD_DIR := board/stm32f411
BOARD_BUILD := $(BUILD)/board
BOARD_SRC := $(CORE_SRC) $(DRV_SRC) $(BOARD_DIR)/startup.c $(BOARD_DIR)/hal_stm32.c $(BOARD_DIR)/main_stm32.c
BOARD_CFLAGS := $(CFLAGS_COMMON) -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -g \
	-ffunction-sections -fdata-sections -ffreestanding -fsingle-precision-constant -Wdouble-promotion
ifeq ($(BOARD_BACKEND),pwm)
BOARD_CFLAGS += -DBOARD_PWM
endif
BOARD_LDFLAGS := -T $(BOARD_DIR)/stm32f411ce.ld -nostartfiles --specs=nano.specs --specs=nosys.specs \
	-Wl,--gc-sections -Wl,-Map=$(BOARD_BUILD)/robot_fw.map

.PHONY: board
board: $(BOARD_BUILD)/robot_fw.bin
	$(ARM_SIZE) $(BOARD_BUILD)/robot_fw.elf
	@if grep -qE '^ \.text\.(malloc|_malloc_r|_sbrk)' $(BOARD_BUILD)/robot_fw.map; then \
		echo "error: malloc linked into the board image"; exit 1; fi

$(BOARD_BUILD)/robot_fw.elf: $(BOARD_SRC) $(HEADERS) $(wildcard $(BOARD_DIR)/*.h) $(BOARD_DIR)/stm32f411ce.ld $(BOARD_DIR)/board.mk Makefile
	@mkdir -p $(dir $@)
	$(ARM_CC) $(BOARD_CFLAGS) $(BOARD_LDFLAGS) -o $@ $(BOARD_SRC)

$(BOARD_BUILD)/robot_fw.bin: $(BOARD_BUILD)/robot_fw.elf
	$(ARM_OBJCOPY) -O binary $< $@
